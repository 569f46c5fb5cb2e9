//! Field validation shared by several resources.

use crate::error::DomainError;

/// Longest description accepted on any resource.
pub const MAX_DESCRIPTION: usize = 1000;

/// The characters (inclusive ranges of code points) that are invisible or reorder
/// text: a Unicode format character (bidi
/// embeddings, overrides, isolates and marks such as U+202E; zero-width space, joiners,
/// word joiner, BOM; invisible operators; tag characters…) or a character that renders
/// as nothing (Hangul fillers, combining grapheme joiner). Such characters make a name
/// look like another one.
pub const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

/// Whether `c` is one of [`INVISIBLE`].
pub fn is_invisible(c: char) -> bool {
    let c = c as u32;
    INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// A required single-line name: at most `max` characters as sent, something besides
/// spaces, trimmed of surrounding spaces.
pub fn name(input: &str, param: &str, max: usize) -> Result<String, DomainError> {
    let v = input.trim();
    if v.is_empty() {
        return Err(DomainError::invalid(
            "name_required",
            param,
            format!("{param} must not be empty"),
        ));
    }
    // Counted before trimming, as the contract's maxLength counts what is sent.
    if input.chars().count() > max {
        return Err(DomainError::invalid(
            "name_too_long",
            param,
            format!("{param} must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "invalid_characters",
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    if v.chars().any(is_invisible) {
        return Err(DomainError::invalid(
            "invalid_characters",
            param,
            format!(
                "{param} must not contain invisible or text-direction characters (such as U+200B or U+202E)"
            ),
        ));
    }
    Ok(v.to_string())
}

/// An optional free-text description of at most [`MAX_DESCRIPTION`] characters.
pub fn description(input: &str, param: &str) -> Result<String, DomainError> {
    if input.chars().count() > MAX_DESCRIPTION {
        return Err(DomainError::invalid(
            "description_too_long",
            param,
            format!("{param} must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if input
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(DomainError::invalid(
            "invalid_characters",
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    Ok(input.trim().to_string())
}

/// Longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;

/// An email address: trimmed, lowercased, one `@` with text on both sides, ≤ 254 chars.
pub fn email(input: &str, param: &str) -> Result<String, DomainError> {
    let v = input.trim().to_lowercase();
    let bad = || {
        DomainError::invalid(
            "invalid_email",
            param,
            format!("{param} must be an email address such as name@example.com"),
        )
    };
    if v.is_empty()
        || v.chars().count() > MAX_EMAIL
        || v.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(v)
}

/// A new password: 12–1024 characters.
pub fn new_password(input: &str, param: &str) -> Result<(), DomainError> {
    let n = input.chars().count();
    if n < 12 {
        return Err(DomainError::invalid(
            "password_too_short",
            param,
            format!("{param} must be at least 12 characters"),
        ));
    }
    if n > 1024 {
        return Err(DomainError::invalid(
            "password_too_long",
            param,
            format!("{param} must be at most 1024 characters"),
        ));
    }
    Ok(())
}

/// Refuses text with control characters (NUL and the like), which no identifier,
/// name or filter may hold and which some databases reject outright.
pub fn no_control_chars(input: &str, param: &str) -> Result<(), DomainError> {
    if input.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "invalid_characters",
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    Ok(())
}

/// A list of names without duplicates or control characters, at most `max` long
/// (e.g. role names).
pub fn distinct_list(
    input: &[String],
    param: &str,
    max: usize,
) -> Result<Vec<String>, DomainError> {
    if input.len() > max {
        return Err(DomainError::invalid(
            "too_many_items",
            param,
            format!("{param} may hold at most {max} entries"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(input.len());
    for (i, v) in input.iter().enumerate() {
        no_control_chars(v, &format!("{param}[{i}]"))?;
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(input: &[String], param: &str) -> Result<Vec<String>, DomainError> {
        crate::value::Tags::parse(input, param).map(crate::value::Tags::into_strings)
    }

    #[test]
    fn control_characters() {
        assert!(no_control_chars("plain text", "q").is_ok());
        for bad in ["a\0b", "\u{1b}[31m", "line\nbreak"] {
            let e = no_control_chars(bad, "q").unwrap_err();
            assert!(e.to_string().contains("control"), "{e}");
        }
        let e = distinct_list(&["admin".into(), "x\0".into()], "roles", 20).unwrap_err();
        assert!(
            matches!(e, DomainError::Invalid { ref param, .. } if param.as_deref() == Some("roles[1]")),
            "{e:?}"
        );
    }

    #[test]
    fn invisible_and_bidi_characters_are_refused() {
        for bad in [
            "ci\u{202E}exe",
            "a\u{200B}b",
            "\u{2066}x\u{2069}",
            "x\u{FEFF}",
            "x\u{E0041}",
        ] {
            assert!(name(bad, "name", 100).is_err(), "{bad:?}");
            assert!(tags(&[bad.to_string()], "tags").is_err(), "{bad:?}");
        }
        assert!(name("café ☕ 東京", "name", 100).is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(name("  ci deploy ", "name", 100).unwrap(), "ci deploy");
        assert!(name("", "name", 100).is_err());
        assert!(name("   ", "name", 100).is_err());
        assert!(name(&"x".repeat(101), "name", 100).is_err());
        assert!(name(&"é".repeat(100), "name", 100).is_ok());
        assert!(name("a\u{0}b", "name", 100).is_err());
    }

    #[test]
    fn tag_rules() {
        let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        assert!(tags(&many, "tags").is_err());
        assert_eq!(tags(&["a".into(), "a".into()], "tags").unwrap(), vec!["a"]);
        match tags(&["ok".into(), "".into()], "tags") {
            Err(DomainError::Invalid { param, .. }) => {
                assert_eq!(param.as_deref(), Some("tags[1]"))
            }
            other => panic!("{other:?}"),
        }
        assert!(tags(&["x".repeat(65)], "tags").is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(
            email(" Ana@Example.COM ", "email").unwrap(),
            "ana@example.com"
        );
        for bad in ["", "ana", "@x.com", "ana@", "a b@x.com", "a@b@c", "a@.com"] {
            assert!(email(bad, "email").is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(new_password("short", "password").is_err());
        assert!(new_password("twelve chars", "password").is_ok());
    }
}
