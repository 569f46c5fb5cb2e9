//! The key format: `<prefix>_<40 base62 random><6 base62 CRC-32>`.
//!
//! The checksum is the CRC-32 (IEEE, as in zlib) of every byte before it — prefix,
//! underscore and random part — written as six base62 digits, most significant first,
//! zero-padded. It lets the verification path refuse a mistyped or invented key without
//! touching any store, and lets secret scanners recognise real keys offline.
//!
//! Keys are stored only as their SHA-256 digest ([`digest`]); the plain secret exists in
//! a [`Secret`], whose `Debug` never shows the value.

use std::fmt;

use rand::{CryptoRng, Rng};
use sha2::{Digest, Sha256};

/// The base62 alphabet, in digit order.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Number of random base62 characters in a key.
pub const RANDOM_LEN: usize = 40;
/// Number of checksum characters at the end of a key.
pub const CHECKSUM_LEN: usize = 6;
/// Longest prefix a key may carry (an organization prefix of 16 plus `cs` for client secrets).
pub const MAX_PREFIX_LEN: usize = 18;

/// A secret shown once: an API key or client secret in plain text.
///
/// It deliberately implements neither `Display` nor a revealing `Debug`, so it can't
/// end up in a log line by accident; call [`Secret::expose`] at the one place that
/// returns it to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a plain secret.
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    /// The plain text, for the single response that hands it over.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A secret read from a flag or an environment variable (`clap` parses with this).
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// A secret in a request body or a settings file: read as a plain string.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// SHA-256 digest of a key, the only form in which keys are stored.
pub type KeyDigest = [u8; 32];

/// Why a string is not a well-formed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    /// No `_` separating prefix and body.
    #[error("the key has no prefix separator")]
    NoSeparator,
    /// The prefix is empty, too long or not `[a-z][a-z0-9]*`.
    #[error("the key prefix is not valid")]
    BadPrefix,
    /// The body is not 46 base62 characters.
    #[error("the key body has the wrong length or characters")]
    BadBody,
    /// The checksum does not match.
    #[error("the key checksum does not match")]
    BadChecksum,
}

/// A key that passed the format and checksum checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The prefix before the underscore.
    pub prefix: &'a str,
    /// The whole key.
    pub full: &'a str,
}

/// Generates a new key with `prefix` from a cryptographic RNG.
pub fn generate(prefix: &str, rng: &mut (impl Rng + CryptoRng)) -> Secret {
    let mut s = String::with_capacity(prefix.len() + 1 + RANDOM_LEN + CHECKSUM_LEN);
    s.push_str(prefix);
    s.push('_');
    for _ in 0..RANDOM_LEN {
        s.push(char::from(BASE62[rng.gen_range(0..62)]));
    }
    let sum = checksum(s.as_bytes());
    s.push_str(std::str::from_utf8(&sum).unwrap_or_default());
    Secret(s)
}

/// The six base62 checksum characters for `head` (everything before the checksum).
pub fn checksum(head: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut v = u64::from(crc32fast::hash(head));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    out
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Checks the shape and checksum of `key` without any lookup.
pub fn parse(key: &str) -> Result<ParsedKey<'_>, MalformedKey> {
    let bytes = key.as_bytes();
    let sep = bytes
        .iter()
        .position(|&b| b == b'_')
        .ok_or(MalformedKey::NoSeparator)?;
    let prefix = &bytes[..sep];
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix[0].is_ascii_lowercase()
        || !prefix
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(MalformedKey::BadPrefix);
    }
    let body = &bytes[sep + 1..];
    if body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.iter().all(|&b| is_base62(b)) {
        return Err(MalformedKey::BadBody);
    }
    let head_len = sep + 1 + RANDOM_LEN;
    if checksum(&bytes[..head_len]) != bytes[head_len..] {
        return Err(MalformedKey::BadChecksum);
    }
    Ok(ParsedKey {
        prefix: &key[..sep],
        full: key,
    })
}

/// SHA-256 of the whole key.
pub fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Hex form of a digest, as stored.
pub fn digest_hex(key: &str) -> String {
    hex::encode(digest(key))
}

/// The masked form shown in lists: prefix, `_…`, and the last four characters.
pub fn mask(key: &str) -> String {
    let prefix = key.split('_').next().unwrap_or_default();
    let tail_start = key.len().saturating_sub(4);
    let tail = key.get(tail_start..).unwrap_or_default();
    format!("{prefix}_…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(seed)
    }

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = generate("kh", &mut rng(7));
        let k = key.expose();
        assert!(k.starts_with("kh_"));
        assert_eq!(k.len(), 3 + 40 + 6);
        assert!(k[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(parse(k).unwrap().prefix, "kh");
    }

    #[test]
    fn checksum_is_crc32_in_base62_most_significant_first() {
        // crc32("kh_") computed independently, converted to base62 by hand.
        let head = b"kh_0000000000000000000000000000000000000000";
        let crc = crc32fast::hash(head) as u64;
        let sum = checksum(head);
        let mut v = 0u64;
        for c in sum {
            v = v * 62 + BASE62.iter().position(|&d| d == c).unwrap() as u64;
        }
        assert_eq!(v, crc);
        // zero padding: a checksum always has six characters
        assert_eq!(sum.len(), 6);
    }

    #[test]
    fn parse_refuses_garbage() {
        assert_eq!(parse(""), Err(MalformedKey::NoSeparator));
        assert_eq!(parse("nokey"), Err(MalformedKey::NoSeparator));
        assert_eq!(parse("_abc"), Err(MalformedKey::BadPrefix));
        assert_eq!(parse("KH_abc"), Err(MalformedKey::BadPrefix));
        assert_eq!(parse("kh_short"), Err(MalformedKey::BadBody));
        let good = generate("kh", &mut rng(1));
        let mut bad = good.expose().to_string();
        bad.push('x');
        assert_eq!(parse(&bad), Err(MalformedKey::BadBody));
        assert!(parse("kh_ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ").is_err());
    }

    #[test]
    fn mask_shows_prefix_and_last_four() {
        let key = generate("acme", &mut rng(3));
        let k = key.expose();
        assert_eq!(mask(k), format!("acme_…{}", &k[k.len() - 4..]));
    }

    #[test]
    fn secret_debug_hides_the_value() {
        let key = generate("kh", &mut rng(3));
        assert!(!format!("{key:?}").contains(&key.expose()[3..]));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(seed in any::<u64>(), prefix in "[a-z][a-z0-9]{1,15}") {
            let key = generate(&prefix, &mut rng(seed));
            let parsed = parse(key.expose()).unwrap();
            prop_assert_eq!(parsed.prefix, prefix.as_str());
            prop_assert_eq!(parsed.full, key.expose());
        }

        #[test]
        fn any_single_character_change_fails(seed in any::<u64>(), pos in 0usize..49, repl in 0usize..62) {
            let key = generate("kh", &mut rng(seed));
            let mut bytes = key.expose().as_bytes().to_vec();
            let pos = pos % bytes.len();
            let new = if pos == 2 { b'-' } else if pos < 2 { b'a' + (repl % 26) as u8 } else { BASE62[repl] };
            prop_assume!(bytes[pos] != new);
            bytes[pos] = new;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(parse(&changed).is_err(), "{} accepted", changed);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_key_like_input(s in "[a-z]{1,20}_[0-9A-Za-z_]{0,60}") {
            let _ = parse(&s);
        }
    }
}
