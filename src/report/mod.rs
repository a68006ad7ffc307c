//! Reports rendered from stored results only.

pub mod claims;
pub mod plots;
pub mod stats;
pub mod table;
