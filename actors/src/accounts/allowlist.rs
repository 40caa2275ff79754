//! The sign-up allowlist's patterns: which email addresses may create an account through an
//! OpenID provider. Pure rules (parsing, normalising, matching); `Accounts` stores the list.
//!
//! A pattern is one of:
//! - `alice@example.com`: exactly that address;
//! - `@example.com`: any address whose domain is exactly `example.com`;
//! - `*.example.com`: any address at a subdomain of `example.com` (`a.example.com`,
//!   `b.c.example.com`), but not at `example.com` itself (add `@example.com` for that).
//!
//! Patterns and addresses are compared trimmed and lowercased. Domains are DNS names: labels of
//! ASCII letters, digits and `-` (not at either end), 1 to 63 characters each, 253 in all.
//! There is no "anyone" pattern: an open node admits new people by other means (local links).
//!
//! Must not: decide anything about existing users; the allowlist only gates sign-ups.

use serde::{Deserialize, Serialize};

use super::AccountsError;
use crate::ids::UnixMillis;

/// One allowlist entry as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowEntry {
    /// Normalised (see the module doc).
    pub pattern: String,
    pub added_at: UnixMillis,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern<'a> {
    Address(&'a str),
    Domain(&'a str),
    Subdomains(&'a str),
}

/// The pattern in its stored form, or why it is not one.
pub fn normalise_pattern(raw: &str) -> Result<String, AccountsError> {
    let p = raw.trim().to_lowercase();
    parse(&p)?;
    Ok(p)
}

/// An email address trimmed and lowercased, if it is one (`local@domain`, see the module doc).
pub fn normalise_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    split_address(&e).ok()?;
    Some(e)
}

/// Whether the (normalised) pattern admits the (normalised) address.
pub fn matches(pattern: &str, email: &str) -> bool {
    let Ok((_, domain)) = split_address(email) else {
        return false;
    };
    match parse(pattern) {
        Ok(Pattern::Address(a)) => a == email,
        Ok(Pattern::Domain(d)) => d == domain,
        Ok(Pattern::Subdomains(d)) => domain
            .strip_suffix(d)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        Err(_) => false,
    }
}

fn parse(p: &str) -> Result<Pattern<'_>, AccountsError> {
    let invalid = |why: &str| {
        AccountsError::Invalid(format!(
            "\"{p}\" is not an allowlist pattern: {why} (use alice@example.com, @example.com or *.example.com)"
        ))
    };
    if p.is_empty() {
        return Err(invalid("it is empty"));
    }
    if let Some(domain) = p.strip_prefix('@') {
        check_domain(domain).map_err(|w| invalid(&w))?;
        return Ok(Pattern::Domain(domain));
    }
    if let Some(domain) = p.strip_prefix("*.") {
        check_domain(domain).map_err(|w| invalid(&w))?;
        return Ok(Pattern::Subdomains(domain));
    }
    split_address(p).map_err(|w| invalid(&w))?;
    Ok(Pattern::Address(p))
}

fn split_address(e: &str) -> Result<(&str, &str), String> {
    let Some((local, domain)) = e.rsplit_once('@') else {
        return Err("an address needs an @".into());
    };
    if local.is_empty() || local.len() > 64 {
        return Err("the part before the @ must be 1 to 64 characters".into());
    }
    if local
        .chars()
        .any(|c| c == '@' || c.is_whitespace() || c.is_control() || c == '*')
    {
        return Err("the part before the @ has a character addresses cannot have".into());
    }
    check_domain(domain)?;
    Ok((local, domain))
}

fn check_domain(d: &str) -> Result<(), String> {
    if d.is_empty() || d.len() > 253 {
        return Err("the domain must be 1 to 253 characters".into());
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(format!("\"{d}\" is not a domain name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_normalised_or_refused_with_a_reason() {
        assert_eq!(
            normalise_pattern("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert_eq!(normalise_pattern("@Example.com").unwrap(), "@example.com");
        assert_eq!(
            normalise_pattern("*.corp.example.com").unwrap(),
            "*.corp.example.com"
        );
        for bad in [
            "",
            "   ",
            "example.com",
            "@",
            "*.",
            "*",
            "*@example.com",
            "alice@",
            "@exa mple.com",
            "@-example.com",
            "@example..com",
            "@example.com.",
            "a b@example.com",
            "alice@@example.com",
            "*.*.example.com",
            "@ex_ample.com",
        ] {
            let e = normalise_pattern(bad).unwrap_err().to_string();
            assert!(e.contains("is not an allowlist pattern"), "{bad:?}: {e}");
        }
        assert_eq!(
            normalise_pattern("example.com").unwrap_err().to_string(),
            "\"example.com\" is not an allowlist pattern: an address needs an @ \
             (use alice@example.com, @example.com or *.example.com)"
        );
    }

    #[test]
    fn addresses_domains_and_subdomains_match_as_documented() {
        let m = |p: &str, e: &str| {
            matches(&normalise_pattern(p).unwrap(), &normalise_email(e).unwrap())
        };
        assert!(m("alice@example.com", "ALICE@example.com"));
        assert!(!m("alice@example.com", "alice2@example.com"));
        assert!(!m("alice@example.com", "alice@example.com.evil.test"));

        assert!(m("@example.com", "bob@example.com"));
        assert!(!m("@example.com", "bob@sub.example.com"));
        assert!(!m("@example.com", "bob@notexample.com"));

        assert!(m("*.example.com", "carol@eu.example.com"));
        assert!(m("*.example.com", "carol@a.b.example.com"));
        assert!(!m("*.example.com", "carol@example.com"));
        assert!(!m("*.example.com", "carol@badexample.com"));
        assert!(!m("*.example.com", "carol@example.com.evil.test"));
    }

    #[test]
    fn only_addresses_are_emails() {
        assert_eq!(
            normalise_email(" Dave@Example.com").as_deref(),
            Some("dave@example.com")
        );
        for bad in [
            "",
            "dave",
            "dave@",
            "@example.com",
            "da ve@example.com",
            "dave@exa_mple",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad:?}");
        }
    }
}
