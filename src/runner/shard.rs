//! Shards: disjoint slices of an experiment's plan, for running it in several processes.

use std::str::FromStr;

use crate::error::{Error, Result};

/// One of `count` disjoint slices of an experiment's runs: run `i` of the plan belongs to
/// shard `i % count`. Written `index/count`, 0-based (`0/3`, `1/3`, `2/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Whether the run at `position` in the plan belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::Usage(format!(
                "--shard `{text}`: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4"
            ))
        };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            index.trim().parse().map_err(|_| bad())?,
            count.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_plan() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for position in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(position)).count(), 1);
        }
        for bad in ["3/3", "1", "a/2", "0/0"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("INDEX/COUNT"), "{err}");
        }
    }
}
