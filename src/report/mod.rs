//! Reports rendered from stored results only.

pub mod table;
