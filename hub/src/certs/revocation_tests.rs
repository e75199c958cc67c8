//! Tests of the revocation list: its lines, and how a changed file is taken in.

use super::*;

#[test]
fn serials_and_fingerprints_are_read_with_comments() {
    let fp = "AB".repeat(32);
    let text = format!(
        "# revoked\n\n00:1A:2b  # leading zeros and colons\nserial:ff\n{fp}\nsha256:{}\n",
        "cd".repeat(32)
    );
    let (set, errors) = parse(&text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(set.len(), 4);
    let cert = |serial: &str, sha: &str| CertRef {
        serial: serial.into(),
        sha256: sha.into(),
    };
    assert!(set.names(&cert("1a2b", "")).is_some());
    assert!(set.names(&cert("ff", "")).is_some());
    assert!(set.names(&cert("9", &"ab".repeat(32))).is_some());
    assert!(set.names(&cert("9", &"00".repeat(32))).is_none());
}

#[test]
fn bad_lines_are_named_by_number() {
    let text = "1a\nnot-hex\n\n1a 2b\nsha256:abcd\n".to_owned() + &"f".repeat(50) + "\n";
    let (set, errors) = parse(&text);
    assert_eq!(set.len(), 1);
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 5, 6], "{errors:?}");
}

#[test]
fn a_bad_edit_keeps_the_list_in_force_and_adds_its_valid_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revoked.txt");
    std::fs::write(&path, "aa\nbb\n").unwrap();
    assert!(matches!(
        Revocations::load(&dir.path().join("missing")),
        Err(RevocationError::Read { .. })
    ));
    let list = Revocations::load(&path).unwrap();
    assert_eq!(list.current().len(), 2);
    // Remove bb, add cc, and make a typo: aa, bb and cc are all revoked.
    std::fs::write(&path, "aa\ncc\nzz-typo\n").unwrap();
    assert!(list.reload_if_changed());
    let has = |s: &str| {
        list.current()
            .names(&CertRef {
                serial: s.into(),
                sha256: String::new(),
            })
            .is_some()
    };
    assert!(has("aa") && has("bb") && has("cc"));
    // A deleted file keeps the list; a clean file replaces it.
    std::fs::remove_file(&path).unwrap();
    assert!(!list.reload_if_changed());
    assert!(has("bb"));
    std::fs::write(&path, "# nothing\n").unwrap();
    assert!(list.reload_if_changed());
    assert!(list.current().is_empty());
    let err = Revocations::load(&{
        std::fs::write(&path, "ok\n").unwrap();
        path.clone()
    })
    .unwrap_err();
    assert!(err.to_string().contains("revoked.txt:1:"), "{err}");
}
