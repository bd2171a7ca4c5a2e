//! Raw configuration structs (what was parsed) and the small parsers that turn their strings into
//! typed values (what was validated).
//!
//! Every struct is `#[serde(deny_unknown_fields)]`. Values that can be wrong after parsing are kept
//! as [`toml::Spanned`] so that a validation error carries the byte range of the offending value and
//! the config crate can print `palisade.toml:7:11: ...`.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A configuration value that parsed as TOML but is not acceptable.
///
/// `span` is the byte range of the offending value in the TOML source (`0..0` when the settings
/// were built in code). `message` never contains a secret: password hashes and API key digests
/// are named by their user or key name, not quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitsConfigError {
    /// Byte range of the offending value in the configuration source.
    pub span: Range<usize>,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl LimitsConfigError {
    pub(crate) fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
        }
    }

    pub(crate) fn at<T>(value: &Spanned<T>, message: impl Into<String>) -> Self {
        Self::new(value.span(), message)
    }
}

/// `rate_limit = { key = "ip+form:username", rate = "5/min", burst = 5, mode = "block" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// `ip`, `ip_prefix`, `header:NAME`, `cookie:NAME`, `form:FIELD`, `json:dotted.path`, or
    /// several of them joined by `+`.
    pub key: Spanned<String>,
    /// `COUNT/UNIT` with unit `s`, `min`, `hour` or `day` (e.g. `5/min`, `100/s`).
    pub rate: Spanned<String>,
    /// Cells allowed at once; defaults to the count of `rate`.
    #[serde(default)]
    pub burst: Option<Spanned<i64>>,
    /// `block` (default: answer 429) or `detect` (count and log, let through).
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
}

/// Escalation of repeated violations to a timed ban.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSettings {
    /// Violations within `window` that trigger a ban (e.g. 5).
    pub violations: Spanned<i64>,
    /// Sliding-start window in which violations are counted (e.g. `"10m"`).
    pub window: Spanned<String>,
    /// Length of the first ban (e.g. `"15m"`).
    pub ban: Spanned<String>,
    /// Repeated bans double up to this length (default: no doubling, every ban is `ban`).
    #[serde(default)]
    pub max_ban: Option<Spanned<String>>,
    /// Upstream/gateway statuses counted as violations on the routes that enable escalation
    /// (e.g. `[401, 403]`). 429s from the limiter and WAF blocks are reported by the gateway.
    #[serde(default)]
    pub statuses: Vec<Spanned<i64>>,
}

/// Operator CIDR lists. `allow` always wins over limits and bans; `deny` always blocks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// Networks that bypass limits and bans (`"10.0.0.0/8"`, `"2001:db8::/32"`, `"192.0.2.7"`).
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Networks that are always refused (403).
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
}

/// HTTP basic auth for admin paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSettings {
    /// Realm sent in `WWW-Authenticate` (default `"palisade"`).
    #[serde(default)]
    pub realm: Option<String>,
    /// Accepted users.
    pub users: Vec<BasicAuthUser>,
}

/// One basic-auth user: a name and an argon2 (`$argon2id$...`) or bcrypt (`$2b$...`) hash.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthUser {
    /// User name, compared exactly.
    pub name: String,
    /// PHC argon2 string or modular-crypt bcrypt string. Plain text is refused.
    pub hash: Spanned<String>,
}

impl std::fmt::Debug for BasicAuthUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuthUser")
            .field("name", &self.name)
            .field("hash", &"<redacted>")
            .finish()
    }
}

/// API keys checked against their SHA-256 digests, each with its own limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// Header carrying the key (default `x-api-key`).
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// Accepted keys.
    pub keys: Vec<ApiKeyEntry>,
}

fn default_api_key_header() -> String {
    "x-api-key".to_owned()
}

/// One API key: a name, the hex SHA-256 of the key, and an optional limit of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Name used in logs and metrics (never the key).
    pub name: String,
    /// Lower- or upper-case hex SHA-256 of the key (64 digits).
    pub sha256: Spanned<String>,
    /// Rate for this key (e.g. `"1000/hour"`); unlimited when absent.
    #[serde(default)]
    pub rate: Option<Spanned<String>>,
    /// Burst for this key; defaults to the count of `rate`.
    #[serde(default)]
    pub burst: Option<Spanned<i64>>,
}

/// Sharing limits and bans between gateway instances through Redis.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// `redis://[user:password@]host:port[/db]`.
    pub redis: Spanned<String>,
    /// How often local state is pushed to and pulled from Redis (default `"250ms"`).
    #[serde(default)]
    pub sync_interval: Option<Spanned<String>>,
    /// `sync` (default: local decisions, synchronised every interval) or `exact` (one atomic Lua
    /// script per decision).
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
    /// Prefix of every Redis key (default `"palisade"`).
    #[serde(default)]
    pub prefix: Option<String>,
}

// `validate` for `palisade check`: the same checks as the constructors, without keeping the
// result. Each returns the first error with its span.

impl RateLimitSettings {
    /// Checks key spec, rate, burst and mode.
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        crate::key::KeySpec::parse(&self.key)?;
        let rate = parse_rate(&self.rate)?;
        parse_burst(self.burst.as_ref(), rate)?;
        parse_mode(self.mode.as_ref())?;
        Ok(())
    }
}

impl EscalationSettings {
    /// Checks counts, durations and statuses.
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        crate::Bans::with_capacity(self, 1).map(drop)
    }
}

impl AccessSettings {
    /// Checks every address and CIDR.
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        crate::AccessList::new(self).map(drop)
    }
}

impl BasicAuthSettings {
    /// Checks that every password is an argon2 or bcrypt hash.
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        crate::BasicAuth::new(self).map(drop)
    }
}

impl ApiKeySettings {
    /// Checks the header name, digests and rates.
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        crate::ApiKeys::new("validate", self).map(drop)
    }
}

impl ClusterSettings {
    /// Checks the URL, interval and mode (no connection is made).
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        crate::Cluster::new(self).map(drop)
    }
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("redis", &redact_url(self.redis.get_ref()))
            .field(
                "sync_interval",
                &self.sync_interval.as_ref().map(|s| s.get_ref()),
            )
            .field("mode", &self.mode.as_ref().map(|s| s.get_ref()))
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`.
pub(crate) fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((creds, host)) => {
                let user = creds.split_once(':').map_or("", |(u, _)| u);
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => "<invalid url>".to_owned(),
    }
}

/// Limit enforcement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// Answer 429 with `Retry-After`.
    Block,
    /// Count and log, let the request through.
    Detect,
}

/// A parsed `COUNT/UNIT` rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Cells per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

/// Parses `5/min`, `100/s`, `1000/hour`, `10/day` (also `sec`, `second`, `m`, `minute`, `h`,
/// `d`, and an optional number before the unit: `10/5min`).
pub fn parse_rate(s: &Spanned<String>) -> Result<Rate, LimitsConfigError> {
    let text = s.get_ref().trim();
    let bad = || {
        LimitsConfigError::at(
            s,
            format!("invalid rate {text:?}: expected COUNT/UNIT such as \"5/min\", \"100/s\" or \"1000/hour\""),
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(LimitsConfigError::at(s, "rate count must be at least 1"));
    }
    let unit = unit.trim();
    let digits = unit.bytes().take_while(u8::is_ascii_digit).count();
    let (mult, unit) = unit.split_at(digits);
    let mult: u64 = if mult.is_empty() {
        1
    } else {
        mult.parse().map_err(|_| bad())?
    };
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3_600,
        "d" | "day" => 86_400,
        _ => return Err(bad()),
    };
    if mult == 0 || mult > 366 {
        return Err(bad());
    }
    Ok(Rate {
        count,
        per: Duration::from_secs(secs * mult),
    })
}

/// Parses `250ms`, `30s`, `10m`, `1h`, `1d` (one number, one unit).
pub fn parse_duration(s: &Spanned<String>) -> Result<Duration, LimitsConfigError> {
    parse_duration_str(s.get_ref())
        .ok_or_else(|| {
            LimitsConfigError::at(
                s,
                format!(
                    "invalid duration {:?}: expected a number and a unit such as \"250ms\", \"30s\", \"10m\", \"1h\" or \"1d\"",
                    s.get_ref()
                ),
            )
        })
        .and_then(|d| {
            if d.is_zero() {
                Err(LimitsConfigError::at(s, "duration must be greater than zero"))
            } else {
                Ok(d)
            }
        })
}

fn parse_duration_str(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms).map(Duration::from_millis)
}

pub(crate) fn parse_mode(mode: Option<&Spanned<String>>) -> Result<LimitMode, LimitsConfigError> {
    match mode {
        None => Ok(LimitMode::Block),
        Some(m) => match m.get_ref().as_str() {
            "block" => Ok(LimitMode::Block),
            "detect" => Ok(LimitMode::Detect),
            other => Err(LimitsConfigError::at(
                m,
                format!("invalid mode {other:?}: expected \"block\" or \"detect\""),
            )),
        },
    }
}

pub(crate) fn parse_burst(
    burst: Option<&Spanned<i64>>,
    rate: Rate,
) -> Result<u32, LimitsConfigError> {
    match burst {
        None => Ok(rate.count),
        Some(b) => match u32::try_from(*b.get_ref()) {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(LimitsConfigError::at(
                b,
                format!("invalid burst {}: expected 1 to {}", b.get_ref(), u32::MAX),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &str) -> Spanned<String> {
        Spanned::new(3..7, s.to_owned())
    }

    #[test]
    fn rates() {
        let r = parse_rate(&sp("5/min")).unwrap();
        assert_eq!((r.count, r.per), (5, Duration::from_secs(60)));
        assert_eq!(
            parse_rate(&sp("100/s")).unwrap().per,
            Duration::from_secs(1)
        );
        assert_eq!(
            parse_rate(&sp("1000/hour")).unwrap().per,
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse_rate(&sp("10/5min")).unwrap().per,
            Duration::from_secs(300)
        );
        for bad in ["5", "0/s", "x/min", "5/fortnight", "-1/s", "5/0min"] {
            let e = parse_rate(&sp(bad)).unwrap_err();
            assert_eq!(e.span, 3..7, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration(&sp("250ms")).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration(&sp("10m")).unwrap(),
            Duration::from_secs(600)
        );
        assert_eq!(
            parse_duration(&sp("1d")).unwrap(),
            Duration::from_secs(86400)
        );
        assert!(parse_duration(&sp("0s")).is_err());
        assert!(parse_duration(&sp("10")).is_err());
        assert!(parse_duration(&sp("m")).is_err());
    }

    #[test]
    fn redis_passwords_never_reach_debug_output() {
        let s: ClusterSettings =
            toml::from_str("redis = \"redis://app:s3cr3t@10.0.0.9:6379/2\"\n").unwrap();
        let d = format!("{s:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(d.contains("redis://app:***@10.0.0.9:6379/2"), "{d}");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let c = crate::Cluster::new(&s).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = toml::from_str::<RateLimitSettings>("key = \"ip\"\nrate = \"5/min\"\nburts = 3\n")
            .unwrap_err();
        assert!(e.to_string().contains("burts"), "{e}");
    }

    #[test]
    fn spans_point_at_the_value() {
        let src = "key = \"ip\"\nrate = \"5/fortnight\"\n";
        let s: RateLimitSettings = toml::from_str(src).unwrap();
        let e = parse_rate(&s.rate).unwrap_err();
        assert_eq!(&src[e.span.clone()], "\"5/fortnight\"");
    }
}
