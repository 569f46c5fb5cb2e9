//! Keys imported from other systems (IMPORT.md): their accepted shapes, the stored
//! hashes they arrive with, and how a verification finds and checks them.
//!
//! An imported key keeps its original string. A plain key, or a SHA-256 digest of one,
//! is stored as the key's digest like a native key. Any other hash waits in a side table
//! until the key's first successful verification, which replaces it by the SHA-256
//! digest. Until then a verification finds the one candidate by its [`Lookup`]: the
//! SHA-512 digest of the string, or — for slow hashes (bcrypt, Argon2id, PBKDF2) — the
//! part of the key the old system kept in clear ([`clear_prefix`]).

use base64::Engine;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::error::DomainError;
use crate::key_format;

/// Shortest imported plain key.
pub const MIN_KEY_LEN: usize = 16;
/// Longest imported plain key.
pub const MAX_KEY_LEN: usize = 256;
/// Longest clear prefix of a slow-hashed key.
pub const MAX_PREFIX_LEN: usize = 64;
/// Most PBKDF2 iterations accepted (Django's defaults are under a million): a
/// verification must stay bounded.
pub const MAX_PBKDF2_ITERATIONS: u32 = 5_000_000;
/// Highest bcrypt cost accepted.
pub const MAX_BCRYPT_COST: u32 = 16;
/// Characters that end a key's clear prefix: `abcd1234.secret` has the prefix `abcd1234`.
pub const PREFIX_SEPARATORS: [char; 3] = ['.', '_', '-'];

/// The hash algorithms an import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256 of the whole key (hex, base64 or base64url).
    Sha256,
    /// SHA-512 of the whole key (hex, base64, base64url, or DRF's `sha512$$<hex>`).
    Sha512,
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    Bcrypt,
    /// An Argon2id hash in PHC form (`$argon2id$v=19$…`).
    Argon2id,
    /// Django's `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`.
    Pbkdf2Sha256,
}

impl Algorithm {
    /// Every algorithm, as the API names them.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Sha256,
        Algorithm::Sha512,
        Algorithm::Bcrypt,
        Algorithm::Argon2id,
        Algorithm::Pbkdf2Sha256,
    ];

    /// The name in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Bcrypt => "bcrypt",
            Algorithm::Argon2id => "argon2id",
            Algorithm::Pbkdf2Sha256 => "pbkdf2_sha256",
        }
    }

    /// Parses an algorithm name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether checking a key costs a deliberately slow computation (these need a
    /// clear prefix to be found by).
    pub fn is_slow(self) -> bool {
        matches!(
            self,
            Algorithm::Bcrypt | Algorithm::Argon2id | Algorithm::Pbkdf2Sha256
        )
    }
}

/// How a verification finds a key imported with a hash other than SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// By the hex SHA-512 digest of the key string.
    Sha512(String),
    /// By the clear prefix of the key string.
    Prefix(String),
}

impl Lookup {
    /// The kind as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Lookup::Sha512(_) => "sha512",
            Lookup::Prefix(_) => "prefix",
        }
    }

    /// The value as stored.
    pub fn value(&self) -> &str {
        match self {
            Lookup::Sha512(v) | Lookup::Prefix(v) => v,
        }
    }

    /// Rebuilds a lookup from its stored kind and value.
    pub fn from_stored(kind: &str, value: String) -> Option<Self> {
        match kind {
            "sha512" => Some(Lookup::Sha512(value)),
            "prefix" => Some(Lookup::Prefix(value)),
            _ => None,
        }
    }

    /// A 32-byte stand-in for this lookup in the index of existing digests, so that a
    /// string no imported key can match costs no database read: the SHA-512 digest's
    /// first half, or a domain-separated SHA-256 of the prefix.
    pub fn index_digest(&self) -> key_format::KeyDigest {
        match self {
            Lookup::Sha512(hex_digest) => {
                let mut d = [0u8; 32];
                if let Some(head) = hex_digest.get(..64) {
                    let _ = hex::decode_to_slice(head, &mut d);
                }
                d
            }
            Lookup::Prefix(p) => prefix_index_digest(p),
        }
    }
}

/// The index stand-in of a clear prefix (see [`Lookup::index_digest`]).
pub fn prefix_index_digest(prefix: &str) -> key_format::KeyDigest {
    let mut h = Sha256::new();
    h.update(b"keyhaven-import-prefix\0");
    h.update(prefix.as_bytes());
    h.finalize().into()
}

/// The index stand-in of a key string's SHA-512 digest (see [`Lookup::index_digest`]).
pub fn sha512_index_digest(sha512: &[u8; 64]) -> key_format::KeyDigest {
    let mut d = [0u8; 32];
    d.copy_from_slice(&sha512[..32]);
    d
}

/// SHA-512 of a key string.
pub fn sha512(key: &str) -> [u8; 64] {
    Sha512::digest(key.as_bytes()).into()
}

/// A hash carried over from another system, checked and normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedHash {
    /// A SHA-256 digest: stored as the key's digest, hex.
    Sha256(String),
    /// Any other: kept until the first successful verification.
    Pending {
        /// Its algorithm.
        algorithm: Algorithm,
        /// The stored form: lowercase hex for SHA-512, the hash string otherwise.
        value: String,
        /// How a verification finds it.
        lookup: Lookup,
    },
}

/// Whether `key` can be an imported plain key: printable ASCII, 16…256 characters.
pub fn is_foreign_shape(key: &str) -> bool {
    (MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The part of `key` before its first separator (`.`, `_` or `-`), when there is one
/// that is neither empty nor the whole key.
pub fn clear_prefix(key: &str) -> Option<&str> {
    let end = key.find(PREFIX_SEPARATORS)?;
    (end > 0 && end + 1 < key.len()).then(|| &key[..end])
}

/// Validates an imported plain key (`param` names it in errors).
pub fn validate_plain_key(key: &str, param: &str) -> Result<(), DomainError> {
    if !is_foreign_shape(key) {
        return Err(DomainError::invalid(
            "invalid_key",
            param,
            format!("{param} must be {MIN_KEY_LEN} to {MAX_KEY_LEN} printable ASCII characters"),
        ));
    }
    if key_format::parse(key) == Err(key_format::MalformedKey::BadChecksum) {
        return Err(DomainError::invalid(
            "invalid_key",
            param,
            format!("{param} has the shape of a Keyhaven key but not its checksum"),
        ));
    }
    Ok(())
}

fn invalid(param: &str, message: impl std::fmt::Display) -> DomainError {
    DomainError::invalid("invalid_hash", param, message)
}

/// Decodes a digest of `len` bytes given in hex, base64 or base64url (padded or not).
fn decode_digest(value: &str, len: usize, param: &str) -> Result<Vec<u8>, DomainError> {
    let v = value.trim();
    if v.len() == len * 2 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(v).map_err(|_| invalid(param, "the hex digest does not decode"));
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for e in engines {
        if let Ok(bytes) = e.decode(v) {
            if bytes.len() == len {
                return Ok(bytes);
            }
        }
    }
    Err(invalid(
        param,
        format!(
            "value must be a {}-byte digest in hex, base64 or base64url",
            len
        ),
    ))
}

/// Checks the `hash` of an import item: its algorithm, its value and — for slow
/// hashes — the clear prefix it is found by. `param` is the item's `hash` path.
pub fn parse_hash(
    algorithm: &str,
    value: &str,
    prefix: Option<&str>,
    param: &str,
) -> Result<ImportedHash, DomainError> {
    let alg = Algorithm::parse(algorithm).ok_or_else(|| {
        DomainError::invalid(
            "invalid_hash_algorithm",
            format!("{param}.algorithm"),
            "algorithm must be sha256, sha512, bcrypt, argon2id or pbkdf2_sha256",
        )
    })?;
    let vparam = format!("{param}.value");
    if value.is_empty() || value.len() > 1024 {
        return Err(invalid(&vparam, "value must be 1 to 1024 characters"));
    }
    let prefix = match prefix {
        Some(p) => {
            let pparam = format!("{param}.lookup.prefix");
            if p.is_empty()
                || p.len() > MAX_PREFIX_LEN
                || !p.bytes().all(|b| (0x21..=0x7e).contains(&b))
                || p.contains(PREFIX_SEPARATORS)
            {
                return Err(DomainError::invalid(
                    "invalid_prefix",
                    pparam,
                    format!(
                        "prefix must be 1 to {MAX_PREFIX_LEN} printable ASCII characters without . _ or -"
                    ),
                ));
            }
            Some(p)
        }
        None => None,
    };
    match alg {
        Algorithm::Sha256 => {
            let d = decode_digest(value, 32, &vparam)?;
            Ok(ImportedHash::Sha256(hex::encode(d)))
        }
        Algorithm::Sha512 => {
            let raw = value.strip_prefix("sha512$$").unwrap_or(value);
            let d = decode_digest(raw, 64, &vparam)?;
            let hex_digest = hex::encode(d);
            Ok(ImportedHash::Pending {
                algorithm: alg,
                value: hex_digest.clone(),
                lookup: Lookup::Sha512(hex_digest),
            })
        }
        Algorithm::Bcrypt | Algorithm::Argon2id | Algorithm::Pbkdf2Sha256 => {
            let Some(prefix) = prefix else {
                return Err(DomainError::invalid(
                    "prefix_required",
                    format!("{param}.lookup.prefix"),
                    format!(
                        "a {} hash needs lookup.prefix: the part of the key before its first separator",
                        alg.as_str()
                    ),
                ));
            };
            check_slow_hash(alg, value, &vparam)?;
            Ok(ImportedHash::Pending {
                algorithm: alg,
                value: value.to_string(),
                lookup: Lookup::Prefix(prefix.to_string()),
            })
        }
    }
}

/// Refuses a slow hash this module could not check, or one too costly to check.
fn check_slow_hash(alg: Algorithm, value: &str, param: &str) -> Result<(), DomainError> {
    match alg {
        Algorithm::Bcrypt => {
            let parts: Vec<&str> = value.split('$').collect();
            let ok = parts.len() == 4
                && parts[0].is_empty()
                && matches!(parts[1], "2a" | "2b" | "2y" | "2x")
                && parts[2]
                    .parse::<u32>()
                    .is_ok_and(|c| (4..=MAX_BCRYPT_COST).contains(&c))
                && parts[3].len() == 53;
            if !ok {
                return Err(invalid(
                    param,
                    format!("value must be a bcrypt hash ($2b$<cost ≤ {MAX_BCRYPT_COST}>$…)"),
                ));
            }
        }
        Algorithm::Argon2id => {
            let parsed = argon2::PasswordHash::new(value)
                .map_err(|_| invalid(param, "value must be an Argon2id hash in PHC form"))?;
            if parsed.algorithm.as_str() != "argon2id" {
                return Err(invalid(param, "value must be an Argon2id hash"));
            }
            let params = argon2::Params::try_from(&parsed)
                .map_err(|_| invalid(param, "the Argon2id parameters are not valid"))?;
            // At most 256 MiB and 20 passes: bounded work per verification.
            if params.m_cost() > 256 * 1024 || params.t_cost() > 20 {
                return Err(invalid(param, "the Argon2id parameters are too costly"));
            }
        }
        Algorithm::Pbkdf2Sha256 => {
            parse_django_pbkdf2(value)
                .ok_or_else(|| invalid(param, format!("value must be Django's pbkdf2_sha256$<iterations ≤ {MAX_PBKDF2_ITERATIONS}>$<salt>$<hash>")))?;
        }
        Algorithm::Sha256 | Algorithm::Sha512 => {}
    }
    Ok(())
}

/// `(iterations, salt, hash)` of a Django PBKDF2-SHA256 hash.
fn parse_django_pbkdf2(value: &str) -> Option<(u32, &str, Vec<u8>)> {
    let mut parts = value.split('$');
    if parts.next()? != "pbkdf2_sha256" {
        return None;
    }
    let iterations: u32 = parts.next()?.parse().ok()?;
    let salt = parts.next()?;
    let hash = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    if parts.next().is_some()
        || iterations == 0
        || iterations > MAX_PBKDF2_ITERATIONS
        || salt.is_empty()
        || hash.is_empty()
        || hash.len() > 64
    {
        return None;
    }
    Some((iterations, salt, hash))
}

/// Whether `key` is the key a pending hash was made from. SHA-512 compares in constant
/// time; the slow hashes are checked by their maintained implementations (and take
/// their time: call this off the async executor).
pub fn matches(algorithm: Algorithm, value: &str, key: &str) -> bool {
    match algorithm {
        Algorithm::Sha256 => {
            let d = key_format::digest_hex(key);
            d.as_bytes().ct_eq(value.as_bytes()).into()
        }
        Algorithm::Sha512 => {
            let d = hex::encode(sha512(key));
            d.as_bytes().ct_eq(value.as_bytes()).into()
        }
        Algorithm::Bcrypt => bcrypt::verify(key, value).unwrap_or(false),
        Algorithm::Argon2id => {
            use argon2::PasswordVerifier;
            match argon2::PasswordHash::new(value) {
                Ok(h) => argon2::Argon2::default()
                    .verify_password(key.as_bytes(), &h)
                    .is_ok(),
                Err(_) => false,
            }
        }
        Algorithm::Pbkdf2Sha256 => {
            let Some((iterations, salt, expected)) = parse_django_pbkdf2(value) else {
                return false;
            };
            let mut out = vec![0u8; expected.len()];
            pbkdf2::pbkdf2_hmac::<Sha256>(key.as_bytes(), salt.as_bytes(), iterations, &mut out);
            out.ct_eq(&expected).into()
        }
    }
}

/// The masked form of an imported key: its first four and last four characters (the
/// clear prefix alone for a key known only by a hash).
pub fn mask(key: &str) -> String {
    let head: String = key.chars().take(4).collect();
    let tail_start = key.len().saturating_sub(4);
    let tail = key.get(tail_start..).unwrap_or_default();
    format!("{head}…{tail}")
}

/// The masked form of a key known only by its hash.
pub fn mask_unknown(prefix: Option<&str>) -> String {
    match prefix {
        Some(p) => format!("{p}…"),
        None => "…".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const KEY: &str = "abcd1234.s3cretPartOfTheImportedKey";

    #[test]
    fn sha256_digests_decode_from_hex_base64_and_base64url() {
        let raw = Sha256::digest(KEY.as_bytes());
        let want = ImportedHash::Sha256(hex::encode(raw));
        for v in [
            hex::encode(raw),
            STANDARD.encode(raw),
            URL_SAFE_NO_PAD.encode(raw),
        ] {
            assert_eq!(
                parse_hash("sha256", &v, None, "keys[0].hash").unwrap(),
                want
            );
        }
        assert_eq!(key_format::digest_hex(KEY), hex::encode(raw));
        assert!(parse_hash("sha256", "abc", None, "h").is_err());
        assert!(parse_hash("md5", "abc", None, "h").is_err());
    }

    #[test]
    fn drf_sha512_is_accepted_as_stored_and_matches_its_key() {
        let hex_digest = hex::encode(Sha512::digest(KEY.as_bytes()));
        let h = parse_hash("sha512", &format!("sha512$${hex_digest}"), None, "h").unwrap();
        let ImportedHash::Pending {
            algorithm,
            value,
            lookup,
        } = h
        else {
            panic!("sha512 waits for its first use")
        };
        assert_eq!(lookup, Lookup::Sha512(hex_digest.clone()));
        assert!(matches(algorithm, &value, KEY));
        assert!(!matches(algorithm, &value, "abcd1234.wrong"));
        let d = sha512(KEY);
        assert_eq!(lookup.index_digest(), sha512_index_digest(&d));
    }

    #[test]
    fn django_pbkdf2_matches_the_key_it_was_made_from() {
        // Made the way Django's PBKDF2PasswordHasher does: base64(pbkdf2_sha256(key, salt, n)).
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(KEY.as_bytes(), b"somesalt", 1000, &mut out);
        let value = format!("pbkdf2_sha256$1000$somesalt${}", STANDARD.encode(out));
        let h = parse_hash("pbkdf2_sha256", &value, Some("abcd1234"), "h").unwrap();
        let ImportedHash::Pending {
            algorithm,
            value,
            lookup,
        } = h
        else {
            panic!("slow hashes wait")
        };
        assert_eq!(lookup, Lookup::Prefix("abcd1234".into()));
        assert!(matches(algorithm, &value, KEY));
        assert!(!matches(algorithm, &value, "abcd1234.nope"));
        // A slow hash needs its prefix, and refuses absurd iteration counts.
        assert!(parse_hash("pbkdf2_sha256", &value, None, "h").is_err());
        let costly = value.replace("$1000$", "$999999999$");
        assert!(parse_hash("pbkdf2_sha256", &costly, Some("abcd1234"), "h").is_err());
    }

    #[test]
    fn bcrypt_and_argon2id_hashes_are_checked_by_their_crates() {
        let b = bcrypt::hash(KEY, 4).unwrap();
        parse_hash("bcrypt", &b, Some("abcd1234"), "h").unwrap();
        assert!(matches(Algorithm::Bcrypt, &b, KEY));
        assert!(!matches(Algorithm::Bcrypt, &b, "abcd1234.other"));

        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let a = argon2::Argon2::default()
            .hash_password(KEY.as_bytes(), &salt)
            .unwrap()
            .to_string();
        parse_hash("argon2id", &a, Some("abcd1234"), "h").unwrap();
        assert!(matches(Algorithm::Argon2id, &a, KEY));
        assert!(!matches(Algorithm::Argon2id, &a, "abcd1234.other"));
        assert!(parse_hash(
            "argon2id",
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
            Some("p"),
            "h"
        )
        .is_err());
    }

    #[test]
    fn clear_prefixes_and_shapes() {
        assert_eq!(clear_prefix(KEY), Some("abcd1234"));
        assert_eq!(clear_prefix("sk_live_abc"), Some("sk"));
        assert_eq!(clear_prefix("noseparatoratall"), None);
        assert_eq!(clear_prefix(".leading"), None);
        assert!(is_foreign_shape(KEY));
        assert!(!is_foreign_shape("short"));
        assert!(!is_foreign_shape("has a space in it somewhere"));
        assert!(!is_foreign_shape(&"x".repeat(257)));
        assert!(validate_plain_key(KEY, "key").is_ok());
        // Keyhaven's own shape with a wrong checksum could never verify.
        let mut native = key_format::generate("kh", &mut rand::rngs::OsRng)
            .expose()
            .to_string();
        native.pop();
        native.push(if native.ends_with('0') { '1' } else { '0' });
        if key_format::parse(&native) == Err(key_format::MalformedKey::BadChecksum) {
            assert!(validate_plain_key(&native, "key").is_err());
        }
        assert_eq!(mask(KEY), "abcd…dKey");
        assert_eq!(mask_unknown(Some("abcd1234")), "abcd1234…");
    }
}
