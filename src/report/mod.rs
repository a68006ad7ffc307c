//! Reports rendered from stored results only.

pub mod budget;
pub mod claims;
pub mod docs;
pub mod plots;
pub mod reported;
pub mod stats;
pub mod table;
