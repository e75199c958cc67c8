//! Who function instances run as (`[instances]`, and each function's `user`): never root. A
//! function with a `user` (a name or a numeric uid) runs as that account with its primary
//! group; one without runs as the agent-wide `user`, or else as a uid of its own drawn from
//! `uid_range`: the range's first uid plus the function's index among the configured
//! functions (its telemetry id), with the gid of the same number. Instances of one function
//! share its uid; two functions never do. The default range, 61000..=61183, lies between the
//! uids of login accounts (up to 60000) and systemd's `DynamicUser=` range (61184..=65519).
//!
//! Names are resolved when the configuration is checked (so `check-config` refuses a user that
//! does not exist) and again, before the fork, each time an instance starts.

use serde::{Deserialize, Deserializer};

/// `[instances]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstancesConfig {
    /// Account of the functions without a `user` of their own; unset: a uid of `uid_range`.
    #[serde(deserialize_with = "user_name_or_id")]
    pub user: Option<String>,
    /// First and last uid (inclusive) given to functions without a user. Default
    /// `[61000, 61183]`.
    pub uid_range: [u32; 2],
}

impl Default for InstancesConfig {
    fn default() -> Self {
        Self {
            user: None,
            uid_range: [61_000, 61_183],
        }
    }
}

/// A uid and the gid that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Highest uid accepted: above it some tools read uids as negative numbers.
const MAX_UID: u32 = i32::MAX as u32 - 1;

impl InstancesConfig {
    /// Checks the range, the default user, and that the range holds a uid for each of
    /// `functions` functions; the error names the field.
    pub fn check(&self, functions: usize) -> Result<(), (String, String)> {
        let [first, last] = self.uid_range;
        let field = || "instances.uid_range".to_string();
        if first == 0 || first > last || last > MAX_UID {
            return Err((
                field(),
                format!(
                    "must be [first, last] with 1 <= first <= last <= {MAX_UID}, got [{first}, {last}]"
                ),
            ));
        }
        if (first..=last).contains(&65_534) || (first..=last).contains(&65_535) {
            return Err((
                field(),
                "must not hold 65534 (nobody) nor 65535 (the 16-bit -1)".into(),
            ));
        }
        if u64::from(last - first) + 1 < functions as u64 {
            return Err((
                field(),
                format!(
                    "holds {} uids but {functions} functions are configured (one uid each)",
                    last - first + 1
                ),
            ));
        }
        if let Some(user) = &self.user {
            self.check_user(user)
                .map_err(|e| ("instances.user".into(), e))?;
        }
        Ok(())
    }

    /// Resolves a configured user and refuses root and the uids of `uid_range`.
    pub fn check_user(&self, user: &str) -> Result<Account, String> {
        let account = resolve_user(user)?;
        if account.uid == 0 {
            return Err(format!(
                "`{user}` is root: instances never run as root (uid 0)"
            ));
        }
        let [first, last] = self.uid_range;
        if (first..=last).contains(&account.uid) {
            return Err(format!(
                "uid {} of `{user}` is in instances.uid_range [{first}, {last}], whose uids \
                 the agent gives to functions without a user",
                account.uid
            ));
        }
        Ok(account)
    }

    /// The account instances of function `index` (its telemetry id) run as when `user` is
    /// its own `user`.
    pub fn account(&self, user: Option<&str>, index: u32) -> Result<Account, String> {
        if let Some(user) = user.or(self.user.as_deref()) {
            return self.check_user(user);
        }
        let [first, last] = self.uid_range;
        let uid = first
            .checked_add(index)
            .filter(|uid| *uid <= last)
            .ok_or_else(|| {
                format!(
                    "function index {index} has no uid in instances.uid_range [{first}, {last}]"
                )
            })?;
        // An account's files would be open to the function (and the function's to it).
        if lookup(Key::Uid(uid))?.is_some() {
            return Err(format!(
                "uid {uid}, which instances.uid_range gives to this function, belongs to an \
                 account of this host: choose a range no account uses"
            ));
        }
        Ok(Account { uid, gid: uid })
    }
}

/// A user as a name or a decimal uid: its uid and primary gid from the user database (a uid
/// without an entry gets the gid of the same number).
pub fn resolve_user(user: &str) -> Result<Account, String> {
    if user.is_empty() || user.len() > 256 || user.contains('\0') {
        return Err(format!("{user:?} is not a user name or uid"));
    }
    if user.bytes().all(|b| b.is_ascii_digit()) {
        let uid: u32 = user
            .parse()
            .ok()
            .filter(|u| *u <= MAX_UID)
            .ok_or_else(|| format!("uid {user} is out of range (at most {MAX_UID})"))?;
        return Ok(lookup(Key::Uid(uid))?.unwrap_or(Account { uid, gid: uid }));
    }
    let name = std::ffi::CString::new(user).map_err(|_| format!("{user:?} holds a NUL"))?;
    lookup(Key::Name(&name))?.ok_or_else(|| format!("no user `{user}` on this host"))
}

enum Key<'a> {
    Uid(u32),
    Name(&'a std::ffi::CStr),
}

/// getpwuid_r / getpwnam_r, with a buffer grown while the entry does not fit.
fn lookup(key: Key<'_>) -> Result<Option<Account>, String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids), only written to.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf`'s length is passed with it.
        let rc = unsafe {
            match key {
                Key::Uid(uid) => libc::getpwuid_r(
                    uid,
                    &mut entry,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                ),
                Key::Name(name) => libc::getpwnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                ),
            }
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "reading the user database: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        return Ok((!found.is_null()).then_some(Account {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        }));
    }
}

/// Accepts `user = "name"`, `user = "1234"` and `user = 1234`.
pub fn user_name_or_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrId {
        Name(String),
        Id(u32),
    }
    match Option::<NameOrId>::deserialize(d) {
        Ok(Some(NameOrId::Name(n))) => Ok(Some(n)),
        Ok(Some(NameOrId::Id(id))) => Ok(Some(id.to_string())),
        Ok(None) => Ok(None),
        Err(_) => Err(serde::de::Error::custom(
            "expected a user name or a uid (0 ..= 4294967295)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uids_resolve_through_the_user_database() {
        assert_eq!(resolve_user("root"), Ok(Account { uid: 0, gid: 0 }));
        assert_eq!(resolve_user("0"), Ok(Account { uid: 0, gid: 0 }));
        // A uid without an entry takes the gid of the same number.
        let free = (70_000..80_000)
            .find(|u| matches!(lookup(Key::Uid(*u)), Ok(None)))
            .unwrap();
        assert_eq!(
            resolve_user(&free.to_string()),
            Ok(Account {
                uid: free,
                gid: free
            })
        );
        assert!(
            resolve_user("no-such-user-here")
                .unwrap_err()
                .contains("no user `no-such-user-here`")
        );
        assert!(
            resolve_user("4294967295")
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn root_and_uids_of_the_range_are_refused_as_users() {
        let c = InstancesConfig::default();
        assert!(
            c.check_user("root")
                .unwrap_err()
                .contains("never run as root")
        );
        assert!(c.check_user("0").unwrap_err().contains("never run as root"));
        assert!(c.check_user("61000").unwrap_err().contains("uid_range"));
        assert_eq!(c.check_user("60999").unwrap().uid, 60_999);
    }

    #[test]
    fn functions_without_a_user_get_the_uid_of_their_index() {
        let c = InstancesConfig::default();
        assert_eq!(
            c.account(None, 0),
            Ok(Account {
                uid: 61_000,
                gid: 61_000
            })
        );
        assert_eq!(c.account(None, 183).unwrap().uid, 61_183);
        assert!(c.account(None, 184).is_err());
        assert_eq!(c.account(Some("60001"), 0).unwrap().uid, 60_001);
        let with_default = InstancesConfig {
            user: Some("60002".into()),
            ..c.clone()
        };
        assert_eq!(with_default.account(None, 7).unwrap().uid, 60_002);
        assert_eq!(with_default.account(Some("60003"), 7).unwrap().uid, 60_003);
    }

    #[test]
    fn bad_ranges_are_refused() {
        for (range, functions) in [
            ([0, 10], 1),
            ([10, 5], 1),
            ([65_000, 66_000], 1),
            ([61_000, 61_001], 3),
            ([1, u32::MAX], 1),
        ] {
            let c = InstancesConfig {
                user: None,
                uid_range: range,
            };
            assert!(c.check(functions).is_err(), "{range:?} for {functions}");
        }
        assert!(InstancesConfig::default().check(184).is_ok());
        assert!(InstancesConfig::default().check(185).is_err());
    }
}
