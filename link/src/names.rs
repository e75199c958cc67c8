//! The names that travel on the link and must mean the same on both ends: a function's name
//! is what the agent's configuration accepts, so the hub refuses any other before it keys
//! records, placement and rollouts by it. The same goes for an agent's labels and version
//! (its configuration checks them as the hub does), and free text an agent sends (an error,
//! a reason) is made printable and bounded before the hub logs or keeps it.

/// The longest function name.
pub const MAX_FUNCTION_NAME: usize = 64;

/// A function name: 1 to [`MAX_FUNCTION_NAME`] ASCII letters, digits, `-`, `_` and `.`,
/// other than `.` and `..` (a name is also a cgroup folder on the agent).
pub fn is_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FUNCTION_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != ".."
}

/// The most labels an agent may declare.
pub const MAX_LABELS: usize = 64;

/// The longest label key.
pub const MAX_LABEL_KEY: usize = 63;

/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 256;

/// The longest version string (of an agent, or of a rollout target).
pub const MAX_VERSION: usize = 128;

/// A label key: 1 to [`MAX_LABEL_KEY`] ASCII letters, digits, `-`, `_`, `.` and `/`.
pub fn is_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_LABEL_KEY
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A label value: at most [`MAX_LABEL_VALUE`] bytes of text without control characters
/// (a value may be empty).
pub fn is_label_value(value: &str) -> bool {
    value.len() <= MAX_LABEL_VALUE && !value.chars().any(char::is_control)
}

/// Why `labels` cannot be an agent's labels, or `None` when they can.
pub fn labels_refusal<'a>(
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Option<String> {
    if labels.len() > MAX_LABELS {
        return Some(format!("{} labels (at most {MAX_LABELS})", labels.len()));
    }
    for (key, value) in labels {
        if !is_label_key(key) {
            return Some(format!(
                "label key {key:?} is not 1 to {MAX_LABEL_KEY} letters, digits, `-`, `_`, `.` or `/`"
            ));
        }
        if !is_label_value(value) {
            return Some(format!(
                "label {key}'s value is over {MAX_LABEL_VALUE} bytes or has control characters"
            ));
        }
    }
    None
}

/// A version string: at most [`MAX_VERSION`] visible ASCII characters, no spaces (empty
/// means unknown).
pub fn is_version(version: &str) -> bool {
    version.len() <= MAX_VERSION && version.chars().all(|c| c.is_ascii_graphic())
}

/// Free text from a peer, fit to log or keep: control characters become `?` and the text
/// is cut to `max` characters, marked with `…`.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_versions_and_free_text() {
        let ok = [("region".to_string(), "eu-west".to_string())];
        assert_eq!(labels_refusal(ok.iter().map(|(k, v)| (k, v))), None);
        let bad_key = [("a b".to_string(), "x".to_string())];
        assert!(labels_refusal(bad_key.iter().map(|(k, v)| (k, v))).is_some());
        let bad_value = [("zone".to_string(), "a\nb".to_string())];
        assert!(labels_refusal(bad_value.iter().map(|(k, v)| (k, v))).is_some());
        let long_value = [("zone".to_string(), "v".repeat(MAX_LABEL_VALUE + 1))];
        assert!(labels_refusal(long_value.iter().map(|(k, v)| (k, v))).is_some());
        let many: Vec<(String, String)> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(labels_refusal(many.iter().map(|(k, v)| (k, v))).is_some());

        assert!(is_version("0.1.0+build.7"));
        assert!(is_version(""));
        assert!(!is_version("1.0 beta"));
        assert!(!is_version(&"9".repeat(MAX_VERSION + 1)));

        assert_eq!(printable("a\nb\u{1b}[2J", 10), "a?b?[2J");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("abc", 3), "abc");
    }

    #[test]
    fn function_names_are_short_plain_ascii() {
        for ok in [
            "resize",
            "fn-0",
            "a.b_c",
            "x",
            &"n".repeat(MAX_FUNCTION_NAME),
        ] {
            assert!(is_function_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "edge\u{0}1",
            "tab\there",
            "line\nbreak",
            "é",
            &"n".repeat(MAX_FUNCTION_NAME + 1),
        ] {
            assert!(!is_function_name(bad), "{bad:?}");
        }
    }
}
