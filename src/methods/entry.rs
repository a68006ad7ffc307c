//! An experiment's `methods:` entries, typed when the experiment is loaded: a bare name
//! (`mk`) or a mapping (`{name: mk, mixing: uniform, datasets: [cifar10], k: [4]}`).

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_norway::{Mapping, Value};

use super::{MethodConfig, NAMES};

/// One entry of an experiment's `methods:` list.
#[derive(Debug, Clone)]
pub struct MethodEntry {
    pub method: MethodConfig,
    /// The method runs on these datasets of the experiment only (all when absent).
    pub datasets: Option<Vec<String>>,
    /// The method runs at these of the experiment's `k` only (all when absent).
    pub k: Option<Vec<usize>>,
    /// The entry as written, which it serialises back to.
    source: Value,
}

/// Why an entry is not a method: where inside the entry (`mixing`, `k`; empty for the entry
/// itself) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub at: String,
    pub message: String,
}

impl EntryError {
    fn new(at: &str, message: impl Into<String>) -> Self {
        Self {
            at: at.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn unknown_method(name: &str) -> Self {
        Self::new(
            "name",
            format!(
                "unknown method `{name}`: expected one of {}",
                NAMES.join(", ")
            ),
        )
    }
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.at, self.message)
        }
    }
}

/// Reads a method's options struct; unknown keys and bad values are errors naming the key.
pub(super) fn options<T: DeserializeOwned>(options: Mapping) -> Result<T, EntryError> {
    serde_path_to_error::deserialize(Value::Mapping(options)).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." || at == "?" { "" } else { &at };
        EntryError::new(at, e.into_inner().to_string())
    })
}

/// The list under `key`, each item read by `item` (`None` when absent).
fn list<T>(
    map: &mut Mapping,
    key: &str,
    what: &str,
    item: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>, EntryError> {
    match map.remove(key) {
        None => Ok(None),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|v| {
                item(v).ok_or_else(|| EntryError::new(key, format!("lists {what}, got {v:?}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(EntryError::new(
            key,
            format!("must be a list of {what}, got {other:?}"),
        )),
    }
}

impl MethodEntry {
    /// Whether the entry runs on the experiment's dataset `name` (its `datasets:` list, or
    /// every dataset without one).
    pub fn runs_on(&self, name: &str) -> bool {
        self.datasets
            .as_ref()
            .is_none_or(|only| only.iter().any(|d| d == name))
    }

    /// Reads an entry: a method name, or a mapping with `name`, the method's options and the
    /// optional `datasets:` and `k:` restrictions.
    pub fn from_value(value: &Value) -> Result<Self, EntryError> {
        let (name, mut map) = match value {
            Value::String(name) => (name.clone(), Mapping::new()),
            Value::Mapping(map) => {
                let mut map = map.clone();
                match map.remove("name") {
                    Some(Value::String(name)) => (name, map),
                    Some(other) => {
                        return Err(EntryError::new(
                            "name",
                            format!("must be a method name, got {other:?}"),
                        ));
                    }
                    None => {
                        return Err(EntryError::new("", "each method needs a `name` (a string)"));
                    }
                }
            }
            other => {
                return Err(EntryError::new(
                    "",
                    format!("a method is a name or a mapping with `name`, got {other:?}"),
                ));
            }
        };
        let datasets = list(&mut map, "datasets", "dataset names", |v| {
            v.as_str().map(String::from)
        })?;
        let k = list(&mut map, "k", "positive integers", |v| {
            v.as_u64().map(|k| k as usize)
        })?;
        let method = MethodConfig::parse(&name, map).map_err(|e| EntryError {
            message: format!("method `{name}`: {}", e.message),
            ..e
        })?;
        Ok(Self {
            method,
            datasets,
            k,
            source: value.clone(),
        })
    }

    /// Reads an entry written in YAML (the `--method` of `reproduce compare`).
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let value: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        Self::from_value(&value).map_err(|e| e.to_string())
    }
}

/// serde carries only a message out of a nested deserialiser; an entry's inner path travels
/// in front of it, marked, and [`split_nested_path`] takes it off again where the outer path
/// (`methods[3]`) is known.
const PATH_MARK: char = '\u{1f}';

/// Splits a deserialisation message into the inner path an entry put in front of it (if any)
/// and the message itself.
pub fn split_nested_path(message: &str) -> (Option<&str>, &str) {
    match message.strip_prefix(PATH_MARK) {
        Some(rest) => match rest.split_once(PATH_MARK) {
            Some((at, message)) => (Some(at), message),
            None => (None, rest),
        },
        None => (None, message),
    }
}

impl<'de> Deserialize<'de> for MethodEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(&value).map_err(|e| {
            de::Error::custom(if e.at.is_empty() {
                e.message
            } else {
                format!("{PATH_MARK}{}{PATH_MARK}{}", e.at, e.message)
            })
        })
    }
}

impl Serialize for MethodEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}
