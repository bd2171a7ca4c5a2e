//! Admin basic auth with hashed passwords, and API keys checked against their digests.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml::Spanned;

use crate::config::{
    parse_burst, parse_rate, ApiKeySettings, BasicAuthSettings, LimitMode, LimitsConfigError,
};
use crate::key::{KeyPart, KeySpec};
use crate::limiter::{Limiter, LimiterOptions};

/// How long a verified (user, password) pair is trusted without hashing again.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(300);
/// How many verified pairs are remembered.
pub const AUTH_CACHE_MAX: usize = 64;

enum HashKind {
    Argon2,
    Bcrypt,
}

struct User {
    name: String,
    hash: String,
    kind: HashKind,
}

/// Verifies `Authorization: Basic ...` against argon2 or bcrypt hashes.
///
/// Hashing is slow on purpose (tens of milliseconds), so a successful verification is remembered
/// for [`AUTH_CACHE_TTL`] in a table of at most [`AUTH_CACHE_MAX`] entries keyed by
/// SHA-256(user ‖ 0 ‖ password): a logged-in admin costs one hash lookup per request, the table
/// never holds a password, and a changed password in the config (a new `BasicAuth`) starts with an
/// empty cache. Failures are never cached, so every wrong guess pays the full hash: keep a rate
/// limit on admin routes.
pub struct BasicAuth {
    realm: String,
    users: Vec<User>,
    cache: Mutex<HashMap<[u8; 32], (usize, Instant)>>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("realm", &self.realm)
            .field(
                "users",
                &self
                    .users
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Validates every hash (plain text and unknown formats are refused).
    pub fn new(settings: &BasicAuthSettings) -> Result<Self, LimitsConfigError> {
        let mut users = Vec::with_capacity(settings.users.len());
        for u in &settings.users {
            if u.name.is_empty() || u.name.contains(':') {
                return Err(LimitsConfigError::at(
                    &u.hash,
                    format!("basic-auth user name {:?} is empty or contains ':'", u.name),
                ));
            }
            if users.iter().any(|x: &User| x.name == u.name) {
                return Err(LimitsConfigError::at(
                    &u.hash,
                    format!("basic-auth user {:?} is listed twice", u.name),
                ));
            }
            let hash = u.hash.get_ref().trim();
            let kind = if hash.starts_with("$argon2") {
                match PasswordHash::new(hash) {
                    Ok(h)
                        if matches!(h.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d")
                            && h.salt.is_some()
                            && h.hash.is_some() =>
                    {
                        HashKind::Argon2
                    }
                    _ => return Err(bad_hash(&u.hash, &u.name)),
                }
            } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                if hash.len() != 60 || bcrypt::HashParts::from_str(hash).is_err() {
                    return Err(bad_hash(&u.hash, &u.name));
                }
                HashKind::Bcrypt
            } else {
                return Err(bad_hash(&u.hash, &u.name));
            };
            users.push(User {
                name: u.name.clone(),
                hash: hash.to_owned(),
                kind,
            });
        }
        if users.is_empty() {
            return Err(LimitsConfigError::new(
                0..0,
                "basic auth needs at least one user",
            ));
        }
        Ok(Self {
            realm: settings
                .realm
                .clone()
                .unwrap_or_else(|| "palisade".to_owned()),
            users,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The `WWW-Authenticate` value for a 401.
    pub fn challenge(&self) -> String {
        format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            self.realm.replace(['"', '\\'], "")
        )
    }

    /// Checks an `Authorization` header value; returns the user name when it is valid.
    pub fn verify(&self, authorization: &[u8]) -> Option<&str> {
        self.verify_at(authorization, Instant::now())
    }

    fn verify_at(&self, authorization: &[u8], now: Instant) -> Option<&str> {
        let auth = authorization.trim_ascii();
        let scheme = auth.get(..6)?;
        if !scheme.eq_ignore_ascii_case(b"basic ") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth[6..].trim_ascii())
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        let (name, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let mut h = Sha256::new();
        h.update(name);
        h.update([0]);
        h.update(password);
        let digest: [u8; 32] = h.finalize().into();
        if let Some((idx, expiry)) = self.cache.lock().get(&digest).copied() {
            if expiry > now {
                return self.users.get(idx).map(|u| u.name.as_str());
            }
        }
        let found = self.users.iter().position(|u| u.name.as_bytes() == name);
        // An unknown user still pays one hash, so timing does not reveal which names exist.
        let user = &self.users[found.unwrap_or(0)];
        let ok = match user.kind {
            HashKind::Argon2 => PasswordHash::new(&user.hash)
                .map(|h| Argon2::default().verify_password(password, &h).is_ok())
                .unwrap_or(false),
            HashKind::Bcrypt => bcrypt::verify(password, &user.hash).unwrap_or(false),
        };
        let idx = found.filter(|_| ok)?;
        let mut cache = self.cache.lock();
        if cache.len() >= AUTH_CACHE_MAX {
            cache.retain(|_, (_, e)| *e > now);
            if cache.len() >= AUTH_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, (idx, now + AUTH_CACHE_TTL));
        Some(self.users[idx].name.as_str())
    }
}

/// The function form of [`BasicAuth::verify`].
pub fn verify_basic_auth<'a>(auth: &'a BasicAuth, header_value: &[u8]) -> Option<&'a str> {
    auth.verify(header_value)
}

fn bad_hash(hash: &Spanned<String>, user: &str) -> LimitsConfigError {
    // Never quote the value: it may be a plain-text password.
    LimitsConfigError::at(
        hash,
        format!(
            "password of basic-auth user {user:?} must be an argon2 (\"$argon2id$...\") or bcrypt (\"$2b$...\") hash; plain text is refused"
        ),
    )
}

struct ApiKey {
    name: String,
    digest: [u8; 32],
    limiter: Option<Limiter>,
}

/// API keys checked by SHA-256 digest in constant time, each with its own optional limit.
pub struct ApiKeys {
    header: String,
    keys: Vec<ApiKey>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("header", &self.header)
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ApiKeys {
    /// Validates the settings; `id` prefixes the limiter ids (`"{id}/{key name}"`).
    pub fn new(id: &str, settings: &ApiKeySettings) -> Result<Self, LimitsConfigError> {
        Self::with_options(id, settings, LimiterOptions::default())
    }

    /// Like [`ApiKeys::new`] with limiter options (clock, key cap).
    pub fn with_options(
        id: &str,
        settings: &ApiKeySettings,
        options: LimiterOptions,
    ) -> Result<Self, LimitsConfigError> {
        let header = settings.header.trim().to_ascii_lowercase();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(LimitsConfigError::new(
                0..0,
                format!("invalid API key header name {:?}", settings.header),
            ));
        }
        let mut keys = Vec::with_capacity(settings.keys.len());
        for k in &settings.keys {
            let digest = parse_hex32(k.sha256.get_ref().trim()).ok_or_else(|| {
                LimitsConfigError::at(
                    &k.sha256,
                    format!(
                        "sha256 of API key {:?} must be 64 hex digits (the key itself is refused)",
                        k.name
                    ),
                )
            })?;
            if keys
                .iter()
                .any(|x: &ApiKey| x.name == k.name || x.digest == digest)
            {
                return Err(LimitsConfigError::at(
                    &k.sha256,
                    format!("API key {:?} is listed twice (same name or digest)", k.name),
                ));
            }
            let limiter = match &k.rate {
                None => None,
                Some(rate_s) => {
                    let rate = parse_rate(rate_s)?;
                    let burst = parse_burst(k.burst.as_ref(), rate)?;
                    // One bucket per key: its header value is the key.
                    let spec = KeySpec::from_parts(vec![KeyPart::Header(header.clone())]);
                    Some(
                        Limiter::from_parts(
                            &format!("{id}/{}", k.name),
                            spec,
                            rate,
                            burst,
                            LimitMode::Block,
                            LimiterOptions {
                                max_keys: 16,
                                clock: options.clock.clone(),
                            },
                        )
                        .ok_or_else(|| LimitsConfigError::at(rate_s, "rate is too fast"))?,
                    )
                }
            };
            keys.push(ApiKey {
                name: k.name.clone(),
                digest,
                limiter,
            });
        }
        Ok(Self { header, keys })
    }

    /// The (lower-case) header carrying the key.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Finds the key whose digest matches SHA-256(`header_value`). Every configured digest is
    /// compared in constant time, whatever matches. Returns the key name and its limiter (`None`
    /// when the key has no rate); check the request against that limiter.
    pub fn check(&self, header_value: &[u8]) -> Option<(&str, Option<&Limiter>)> {
        let digest: [u8; 32] = Sha256::digest(header_value.trim_ascii()).into();
        let mut found: Option<&ApiKey> = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&digest)) {
                found = Some(k);
            }
        }
        found.map(|k| (k.name.as_str(), k.limiter.as_ref()))
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::{ApiKeyEntry, BasicAuthUser};
    use crate::key::SimpleRequest;
    use crate::limiter::Decision;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn argon2_hash(pw: &str) -> String {
        let salt = SaltString::encode_b64(b"fixed-test-salt!").unwrap();
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn bcrypt_hash(pw: &str) -> String {
        bcrypt::hash_with_salt(pw, 4, *b"0123456789abcdef")
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB)
    }

    fn basic(user: &str, pw: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
        .into_bytes()
    }

    fn settings(users: &[(&str, String)]) -> BasicAuthSettings {
        BasicAuthSettings {
            realm: Some("admin".into()),
            users: users
                .iter()
                .map(|(n, h)| BasicAuthUser {
                    name: n.to_string(),
                    hash: Spanned::new(10..20, h.clone()),
                })
                .collect(),
        }
    }

    #[test]
    fn argon2_and_bcrypt_users() {
        let auth = BasicAuth::new(&settings(&[
            ("alice", argon2_hash("correct horse")),
            ("bob", bcrypt_hash("battery staple")),
        ]))
        .unwrap();
        let rows: &[(&[u8], Option<&str>)] = &[
            (&basic("alice", "correct horse"), Some("alice")),
            (&basic("alice", "correct horse"), Some("alice")), // cached
            (&basic("alice", "wrong"), None),
            (&basic("bob", "battery staple"), Some("bob")),
            (&basic("bob", "correct horse"), None),
            (&basic("carol", "correct horse"), None),
            (b"Bearer abc", None),
            (b"Basic !!!", None),
            (b"basic", None),
        ];
        for (i, (header, want)) in rows.iter().enumerate() {
            assert_eq!(auth.verify(header), *want, "row {i}");
        }
        assert_eq!(
            verify_basic_auth(&auth, &basic("bob", "battery staple")),
            Some("bob")
        );
        assert_eq!(auth.challenge(), "Basic realm=\"admin\", charset=\"UTF-8\"");
        assert!(!format!("{auth:?}").contains("argon2"));
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let auth = BasicAuth::new(&settings(&[("bob", bcrypt_hash("pw"))])).unwrap();
        let t0 = Instant::now();
        assert_eq!(auth.verify_at(&basic("bob", "pw"), t0), Some("bob"));
        assert_eq!(auth.cache.lock().len(), 1);
        assert_eq!(
            auth.verify_at(
                &basic("bob", "pw"),
                t0 + AUTH_CACHE_TTL + Duration::from_secs(1)
            ),
            Some("bob")
        );
        for i in 0..(AUTH_CACHE_MAX * 2) {
            auth.verify_at(&basic("bob", &format!("nope{i}")), t0);
        }
        assert!(auth.cache.lock().len() <= AUTH_CACHE_MAX);
    }

    #[test]
    fn plain_text_passwords_are_refused_without_echo() {
        for bad in ["hunter2", "$argon2id$garbage", "$2b$04$short", ""] {
            let e = BasicAuth::new(&settings(&[("alice", bad.to_owned())])).unwrap_err();
            assert_eq!(e.span, 10..20);
            assert!(bad.is_empty() || !e.message.contains(bad), "{}", e.message);
        }
    }

    fn sha_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn api_keys_with_their_own_limits() {
        let clock = Clock::fake();
        let s = ApiKeySettings {
            header: "X-Api-Key".into(),
            keys: vec![
                ApiKeyEntry {
                    name: "partner".into(),
                    sha256: Spanned::new(0..0, sha_hex("k-partner")),
                    rate: Some(Spanned::new(0..0, "2/min".into())),
                    burst: None,
                },
                ApiKeyEntry {
                    name: "erp".into(),
                    sha256: Spanned::new(0..0, sha_hex("k-erp").to_uppercase()),
                    rate: Some(Spanned::new(0..0, "1/s".into())),
                    burst: Some(Spanned::new(0..0, 3)),
                },
                ApiKeyEntry {
                    name: "internal".into(),
                    sha256: Spanned::new(0..0, sha_hex("k-internal")),
                    rate: None,
                    burst: None,
                },
            ],
        };
        let keys = ApiKeys::with_options(
            "shop/api",
            &s,
            LimiterOptions {
                max_keys: 16,
                clock: clock.clone(),
            },
        )
        .unwrap();
        assert_eq!(keys.header(), "x-api-key");
        assert!(keys.check(b"nope").is_none());
        assert!(matches!(
            keys.check(b"k-internal"),
            Some(("internal", None))
        ));
        let (name, partner) = keys.check(b"k-partner").unwrap();
        assert_eq!(name, "partner");
        let partner = partner.unwrap();
        let (_, erp) = keys.check(b"k-erp").unwrap();
        let erp = erp.unwrap();
        let req =
            |k: &str, ip: &str| SimpleRequest::new(ip.parse().unwrap()).header("x-api-key", k);
        // Each key has its own bucket, shared by every client address using it.
        assert_eq!(
            partner.check(&req("k-partner", "192.0.2.1")),
            Decision::Allow
        );
        assert_eq!(
            partner.check(&req("k-partner", "192.0.2.2")),
            Decision::Allow
        );
        assert!(partner.check(&req("k-partner", "192.0.2.3")).blocks());
        for _ in 0..3 {
            assert_eq!(erp.check(&req("k-erp", "192.0.2.1")), Decision::Allow);
        }
        assert!(erp.check(&req("k-erp", "192.0.2.1")).blocks());
        clock.advance(Duration::from_secs(1));
        assert_eq!(erp.check(&req("k-erp", "192.0.2.1")), Decision::Allow);
        assert!(partner.check(&req("k-partner", "192.0.2.1")).blocks());
    }

    #[test]
    fn api_key_digests_are_validated() {
        let s = ApiKeySettings {
            header: "x-api-key".into(),
            keys: vec![ApiKeyEntry {
                name: "raw".into(),
                sha256: Spanned::new(4..9, "my-secret-key".into()),
                rate: None,
                burst: None,
            }],
        };
        let e = ApiKeys::new("x", &s).unwrap_err();
        assert_eq!(e.span, 4..9);
        assert!(!e.message.contains("my-secret-key"));
    }
}
