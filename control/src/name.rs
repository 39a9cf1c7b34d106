//! Names of networks, ports and security groups, and the external ids objects carry: what the
//! API accepts.

use brink_api::types::ExternalIds;

/// The longest name: room for a Neutron UUID (36 characters) with a prefix.
pub const MAX_NAME: usize = 64;
/// The most external ids one object carries.
pub const MAX_EXTERNAL_IDS: usize = 16;
/// The longest external id key or value.
pub const MAX_EXTERNAL_ID: usize = 256;

/// A name with characters or a length that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad name {0:?}: use 1-{MAX_NAME} characters from A-Z a-z 0-9 _ . -")]
pub struct BadName(pub String);

/// External ids that are too many, too long or not printable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad external ids: {0}; give at most {MAX_EXTERNAL_IDS}, each key 1-{MAX_EXTERNAL_ID} and each \
     value 0-{MAX_EXTERNAL_ID} printable characters"
)]
pub struct BadExternalIds(pub String);

/// Checks a network, port or security group name (a Neutron UUID is one).
pub fn check(name: &str) -> Result<(), BadName> {
    let ok = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BadName(name.to_string()))
    }
}

/// Checks an object's external ids.
pub fn check_external_ids(ids: &ExternalIds) -> Result<(), BadExternalIds> {
    if ids.len() > MAX_EXTERNAL_IDS {
        return Err(BadExternalIds(format!("{} of them", ids.len())));
    }
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    for (k, v) in ids {
        if k.is_empty() || k.len() > MAX_EXTERNAL_ID || !printable(k) {
            return Err(BadExternalIds(format!("key {k:?}")));
        }
        if v.len() > MAX_EXTERNAL_ID || !printable(v) {
            return Err(BadExternalIds(format!("value {v:?} of {k:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "a b", "x/y", &"n".repeat(MAX_NAME + 1), "ünï"] {
            assert_eq!(check(bad), Err(BadName(bad.into())));
        }
        check("net-1_a.b").unwrap();
        check("5b9cfd3c-0a1e-4f4b-9d6e-1c2f3a4b5c6d").unwrap();
    }

    #[test]
    fn external_ids_are_bounded_and_printable() {
        let one = |k: &str, v: &str| ExternalIds::from([(k.to_string(), v.to_string())]);
        check_external_ids(&one("iface-id", "5b9cfd3c-0a1e-4f4b-9d6e-1c2f3a4b5c6d")).unwrap();
        check_external_ids(&one("attached-mac", "")).unwrap();
        check_external_ids(&one("", "x")).unwrap_err();
        check_external_ids(&one("k", "a\nb")).unwrap_err();
        check_external_ids(&one("k", &"v".repeat(MAX_EXTERNAL_ID + 1))).unwrap_err();
        let many = (0..=MAX_EXTERNAL_IDS)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        check_external_ids(&many).unwrap_err();
    }
}
