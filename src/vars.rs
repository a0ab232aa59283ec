//! The environment, read once. `main` takes a snapshot of the process environment and hands
//! it down; CI detection, key templates, the action's inputs, the report and every store read
//! their variables from it, so a test can build any part from a map of its own.

use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct Vars {
    map: HashMap<String, String>,
}

impl Vars {
    /// The process environment (names and values that are not UTF-8 are read lossily).
    pub fn from_process() -> Vars {
        Vars {
            map: std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Vars {
        Vars {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable that is set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// A boolean variable: `1`, `true`, `yes` and `on` (any case) are true.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(truthy)
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.map.insert(name.to_string(), value.to_string());
    }

    /// Every variable, for templates (`.Environment.NAME`) and client libraries that take
    /// their configuration from variables.
    pub fn all(&self) -> &HashMap<String, String> {
        &self.map
    }

    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME").map(PathBuf::from)
    }
}

/// How kura reads a boolean: `1`, `true`, `yes`, `on`, in any case.
pub fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_unset_and_booleans_read_four_ways() {
        let v = Vars::from_pairs([("A", ""), ("B", "Yes"), ("C", "0"), ("D", "on")]);
        assert_eq!(v.get("A"), None);
        assert!(v.flag("B") && v.flag("D"));
        assert!(!v.flag("C") && !v.flag("A") && !v.flag("missing"));
    }
}
