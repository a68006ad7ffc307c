//! Dotted-path overrides (`recipe.epochs=3`, `datasets.0.model.hidden=[256,256]`) applied to
//! the raw YAML of an experiment before it is type-checked. Profiles are lists of the same
//! overrides, so `--set` and profiles share one mechanism.

use serde_norway::Value;

/// Sets `path` (dot-separated keys and sequence indices) in `root` to `value`.
///
/// Every segment but the last must exist; the last may add a key to a mapping (the typed
/// parse that follows rejects keys the experiment does not know).
pub fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("`{path}` is not a dotted key path"));
    }
    let mut node = root;
    for (depth, segment) in segments.iter().enumerate() {
        let last = depth + 1 == segments.len();
        let here = segments[..=depth].join(".");
        node = match node {
            Value::Mapping(map) => {
                if last {
                    map.insert(Value::String(segment.to_string()), value);
                    return Ok(());
                }
                map.get_mut(*segment)
                    .ok_or_else(|| format!("unknown key `{here}`"))?
            }
            Value::Sequence(seq) => {
                let index: usize = segment
                    .parse()
                    .map_err(|_| format!("`{here}`: `{segment}` must be an index into a list"))?;
                let len = seq.len();
                let slot = seq.get_mut(index).ok_or_else(|| {
                    format!("`{here}`: index {index} is out of range (the list has {len} entries)")
                })?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => return Err(format!("`{here}`: cannot descend into a plain value")),
        };
    }
    unreachable!("the loop returns at the last segment")
}

/// Parses `path=value`, where value is YAML (`3`, `0.1`, `[256, 256]`, `uniform`).
pub fn parse_assignment(text: &str) -> Result<(String, Value), String> {
    let (path, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`--set {text}`: expected path=value"))?;
    let value: Value = serde_norway::from_str(value)
        .map_err(|e| format!("`--set {text}`: value is not valid YAML: {e}"))?;
    Ok((path.trim().to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nested_keys_and_list_items() {
        let mut v: Value = serde_norway::from_str("a: {b: 1}\nlist: [{x: 1}, {x: 2}]").unwrap();
        set_path(&mut v, "a.b", Value::from(5)).unwrap();
        set_path(&mut v, "list.1.x", Value::from(7)).unwrap();
        set_path(&mut v, "a.new", Value::from(true)).unwrap();
        assert_eq!(v["a"]["b"], Value::from(5));
        assert_eq!(v["list"][1]["x"], Value::from(7));
        assert_eq!(v["a"]["new"], Value::from(true));
    }

    #[test]
    fn errors_name_the_path() {
        let mut v: Value = serde_norway::from_str("a: {b: 1}\nlist: [1]").unwrap();
        assert!(
            set_path(&mut v, "nope.b", Value::from(1))
                .unwrap_err()
                .contains("`nope`")
        );
        assert!(
            set_path(&mut v, "list.4", Value::from(1))
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse_assignment("recipe.epochs")
                .unwrap_err()
                .contains("path=value")
        );
        assert_eq!(
            parse_assignment("k=[2, 4]").unwrap().1,
            serde_norway::from_str::<Value>("[2, 4]").unwrap()
        );
    }
}
