//! Names of networks, ports and security groups: what the API accepts.

/// A name with characters or a length that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad name {0:?}: use 1-32 characters from A-Z a-z 0-9 _ . -")]
pub struct BadName(pub String);

/// Checks a network, port or security group name.
pub fn check(name: &str) -> Result<(), BadName> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "a b", "x/y", &"n".repeat(33), "ünï"] {
            assert_eq!(check(bad), Err(BadName(bad.into())));
        }
        check("net-1_a.b").unwrap();
    }
}
