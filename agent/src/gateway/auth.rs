//! Client authentication on the public gateway: per-function bearer tokens.
//!
//! `[gateway.tokens]` maps a function to the SHA-256 digests (64 hex digits) of the tokens
//! that may invoke it; the tokens themselves are never stored (`synapse-agent hash-token`, or
//! `printf %s "$TOKEN" | sha256sum`, gives the digest). A function without an entry is open,
//! as before. For a function with one, the request must carry exactly one
//! `Authorization: Bearer TOKEN` header: none (or another scheme, or a malformed value) is
//! answered 401 with `WWW-Authenticate: Bearer`, a token whose digest is not listed 403. The
//! presented token's digest is compared with every listed one in constant time, all of them
//! each time, so the answer's timing says nothing about how close a guess came. The check
//! reads only the request's head: a refused client's body is never read.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::{
    Response, StatusCode,
    header::{self, HeaderValue},
};
use sha2::{Digest as _, Sha256};

/// The SHA-256 digest of `token`, as lower-case hex: what `[gateway.tokens]` lists.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `token` is a bearer token as RFC 6750 writes one (`b64token`): letters, digits,
/// `-._~+/`, then any `=`.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// 64 hex digits as 32 bytes.
fn digest_of_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Checks `[gateway.tokens]` against the functions the gateway serves (`functions`): every
/// entry names one, lists at least one digest, and every digest is 64 hex digits.
pub fn check_tokens<'a>(
    tokens: &BTreeMap<String, Vec<String>>,
    functions: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), (String, String)> {
    for (function, digests) in tokens {
        let field = format!("gateway.tokens.{function}");
        if !functions.clone().any(|f| f == function) {
            return Err((
                field,
                "names no function of this agent's [[functions]]".into(),
            ));
        }
        if digests.is_empty() {
            return Err((
                field,
                "lists no token digest (leave the function out to keep it open)".into(),
            ));
        }
        if digests.len() > MAX_TOKENS {
            return Err((field, format!("lists more than {MAX_TOKENS} digests")));
        }
        for digest in digests {
            if digest_of_hex(digest).is_none() {
                return Err((
                    field,
                    format!(
                        "{digest:?} is not 64 hexadecimal digits (a SHA-256 of the token: \
                         `synapse-agent hash-token`)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Most token digests one function lists.
const MAX_TOKENS: usize = 1024;

/// The token digests of every function the gateway serves, in the gateway's order.
#[derive(Debug, Default)]
pub struct Tokens {
    by_function: Vec<Vec<[u8; 32]>>,
}

/// What a request's credentials are worth for one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The function is open, or the token is one of its own.
    Allowed,
    /// No bearer token (or not one header of the `Bearer` scheme): 401.
    Missing,
    /// A bearer token that is not the function's: 403.
    Wrong,
}

impl Tokens {
    /// The digests of `table` (checked by [`check_tokens`]; an entry that does not parse
    /// leaves its function closed to every token) for `functions`, in that order.
    pub fn new(table: &BTreeMap<String, Vec<String>>, functions: &[String]) -> Self {
        let by_function = functions
            .iter()
            .map(|name| match table.get(name) {
                None => Vec::new(),
                Some(digests) => {
                    let parsed: Vec<[u8; 32]> =
                        digests.iter().filter_map(|d| digest_of_hex(d)).collect();
                    if parsed.is_empty() {
                        // Listed, yet no digest usable: closed, never open by mistake.
                        vec![CLOSED]
                    } else {
                        parsed
                    }
                }
            })
            .collect();
        Self { by_function }
    }

    /// Whether the function at `index` takes requests without a token.
    pub fn open(&self, index: usize) -> bool {
        self.by_function.get(index).is_none_or(Vec::is_empty)
    }

    /// The verdict on a request for the function at `index` with these `Authorization`
    /// header values.
    pub fn verdict<'v>(
        &self,
        index: usize,
        mut authorization: impl Iterator<Item = &'v [u8]>,
    ) -> Verdict {
        let Some(digests) = self.by_function.get(index).filter(|d| !d.is_empty()) else {
            return Verdict::Allowed;
        };
        let (Some(value), None) = (authorization.next(), authorization.next()) else {
            return Verdict::Missing;
        };
        let Some(token) = bearer(value) else {
            return Verdict::Missing;
        };
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = false;
        for digest in digests {
            found |= same(&presented, digest);
        }
        if found {
            Verdict::Allowed
        } else {
            Verdict::Wrong
        }
    }
}

/// A digest no token hashes to in practice: the entry of a function whose listed digests
/// all failed to parse.
const CLOSED: [u8; 32] = [0xff; 32];

/// The token of an `Authorization: Bearer TOKEN` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first()?.is_ascii_whitespace() {
        return None;
    }
    let token = rest.trim_ascii();
    is_b64token(std::str::from_utf8(token).ok()?).then_some(token)
}

/// Equality of two digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The gateway's answer to a refused request, or `None` when allowed.
pub fn refusal(verdict: Verdict, function: &str) -> Option<Response<Bytes>> {
    let (status, message) = match verdict {
        Verdict::Allowed => return None,
        Verdict::Missing => (
            StatusCode::UNAUTHORIZED,
            format!("function {function} needs a bearer token (Authorization: Bearer TOKEN)"),
        ),
        Verdict::Wrong => (
            StatusCode::FORBIDDEN,
            format!("function {function}: this token may not invoke it"),
        ),
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if verdict == Verdict::Missing {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"synapse\""),
        );
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token_0123456789";

    fn tokens() -> Tokens {
        let table = BTreeMap::from([("locked".to_string(), vec![hash_token(TOKEN)])]);
        Tokens::new(&table, &["open".into(), "locked".into()])
    }

    fn verdict(index: usize, values: &[&str]) -> Verdict {
        tokens().verdict(index, values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn the_digest_is_sha256_hex_as_sha256sum_prints_it() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn open_functions_take_anything_and_locked_ones_only_their_token() {
        assert_eq!(verdict(0, &[]), Verdict::Allowed);
        assert_eq!(verdict(0, &["Bearer nope"]), Verdict::Allowed);
        assert_eq!(verdict(1, &[&format!("Bearer {TOKEN}")]), Verdict::Allowed);
        assert_eq!(
            verdict(1, &[&format!("bearer   {TOKEN} ")]),
            Verdict::Allowed
        );
        assert_eq!(verdict(1, &["Bearer wrong"]), Verdict::Wrong);
        assert_eq!(verdict(1, &[&format!("Bearer {TOKEN}x")]), Verdict::Wrong);
    }

    #[test]
    fn no_token_another_scheme_or_two_headers_is_missing() {
        let good = format!("Bearer {TOKEN}");
        for values in [
            vec![],
            vec!["Basic dXNlcjpwYXNz"],
            vec!["Bearer"],
            vec!["Bearer "],
            vec!["Bearertoken"],
            vec!["Bearer a b"],
            vec![good.as_str(), good.as_str()],
        ] {
            assert_eq!(verdict(1, &values), Verdict::Missing, "{values:?}");
        }
    }

    #[test]
    fn the_configuration_check_names_the_entry() {
        let names = ["api", "other"];
        let check = |table: &[(&str, Vec<String>)]| {
            let table = table
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            check_tokens(&table, names.iter().copied())
        };
        assert_eq!(check(&[("api", vec![hash_token("x")])]), Ok(()));
        let err = check(&[("nope", vec![hash_token("x")])]).unwrap_err();
        assert_eq!(err.0, "gateway.tokens.nope");
        let err = check(&[("api", vec!["abc".into()])]).unwrap_err();
        assert!(err.1.contains("64 hexadecimal"), "{err:?}");
        let err = check(&[("api", vec!["g".repeat(64)])]).unwrap_err();
        assert!(err.1.contains("64 hexadecimal"), "{err:?}");
        assert!(check(&[("api", vec![])]).is_err());
    }

    #[test]
    fn refusals_say_which_and_ask_for_a_bearer_token() {
        let missing = refusal(Verdict::Missing, "f").unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert!(
            missing.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let wrong = refusal(Verdict::Wrong, "f").unwrap();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        assert!(refusal(Verdict::Allowed, "f").is_none());
    }
}
