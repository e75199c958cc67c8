//! The names that travel on the link and must mean the same on both ends: a function's name
//! is what the agent's configuration accepts, so the hub refuses any other before it keys
//! records, placement and rollouts by it.

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

#[cfg(test)]
mod tests {
    use super::*;

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
