//! YAML decoding helpers that reproduce how Thanos (Go, `gopkg.in/yaml.v2` with
//! `UnmarshalStrict`) reads scalar values, so that a configuration Thanos accepts decodes to the
//! same values here.
//!
//! * A key with an empty value (`key:` or `key: ~`) gets the Go zero value (`""`, `false`, `0`,
//!   `0s`, an empty map), exactly as yaml.v2 does. A nested section left empty (`http_config:`)
//!   keeps its defaults instead (yaml.v2 would zero every field in it).
//! * Booleans accept the YAML 1.1 words yaml.v2 knows (`yes`/`no`, `on`/`off`, `y`/`n` in their
//!   usual capitalisations) besides `true`/`false`.
//! * Strings accept any scalar (`bucket: 123` is the string `"123"`), as yaml.v2 does.
//! * Durations are Prometheus `model.Duration` strings: [`parse_duration`].

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Decodes `T`, with an empty value (YAML null) giving `T::default()`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Decodes a boolean the way yaml.v2 does (YAML 1.1 words included); empty is `false`.
pub(crate) fn boolean<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<YamlBool>::deserialize(deserializer)?.is_some_and(|b| b.0))
}

/// Decodes a Prometheus duration string; empty is zero.
pub(crate) fn duration<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<PromDuration>::deserialize(deserializer)?.map_or(Duration::ZERO, |d| d.0))
}

/// Decodes one of `choices` (a closed set of words); errors name the key.
pub(crate) fn word<'de, D>(
    deserializer: D,
    choices: &'static [&'static str],
    message: &'static str,
) -> Result<Option<&'static str>, D::Error>
where
    D: Deserializer<'de>,
{
    struct WordVisitor {
        choices: &'static [&'static str],
        message: &'static str,
    }

    impl Visitor<'_> for WordVisitor {
        type Value = Option<&'static str>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "one of {}", self.choices.join(", "))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match self.choices.iter().find(|choice| **choice == v) {
                Some(choice) => Ok(Some(choice)),
                None => Err(E::custom(format!("{}: {v}", self.message))),
            }
        }
    }

    // Errors must be raised inside the visitor: serde_yaml_ng attaches the key's path and
    // position only to those.
    deserializer.deserialize_any(WordVisitor { choices, message })
}

/// A Prometheus duration, parsed inside the visitor so that errors carry the key's path.
struct PromDuration(Duration);

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = PromDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 1m30s")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PromDuration, E> {
                parse_duration(v).map(PromDuration).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}

/// A boolean in YAML 1.1 spelling.
struct YamlBool(bool);

impl<'de> Deserialize<'de> for YamlBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoolVisitor;

        impl Visitor<'_> for BoolVisitor {
            type Value = YamlBool;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean (true or false)")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<YamlBool, E> {
                Ok(YamlBool(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<YamlBool, E> {
                match v {
                    "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
                        Ok(YamlBool(true))
                    }
                    "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
                        Ok(YamlBool(false))
                    }
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }

        deserializer.deserialize_any(BoolVisitor)
    }
}

/// The units of a Prometheus duration, biggest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("y", 365 * 24 * 3_600 * NANOS_PER_SEC),
    ("w", 7 * 24 * 3_600 * NANOS_PER_SEC),
    ("d", 24 * 3_600 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a Prometheus `model.Duration` string such as `1m30s`, `90s`, `2m`, `1h`, `500ms` or
/// `0`.
///
/// Grammar: `0`, or one or more `<digits><unit>` groups with units `y` (365 days), `w`, `d`,
/// `h`, `m`, `s`, `ms`, each unit at most once and from the biggest to the smallest. No sign,
/// no fraction, no spaces. The value must fit in Go's `time.Duration` (about 292 years).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match text {
        "0" => return Ok(Duration::ZERO),
        "" => return Err("empty duration string".to_owned()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {text:?}");
    let mut rest = text;
    let mut total: u128 = 0;
    // Index in UNITS of the last unit seen; the next one must come strictly after it.
    let mut next_allowed = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(invalid());
        }
        let value: u128 = rest[..digits].parse().map_err(|_| "duration out of range".to_owned())?;
        rest = &rest[digits..];
        let unit_len = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {text:?}"));
        };
        if index < next_allowed {
            return Err(invalid());
        }
        next_allowed = index + 1;
        total = value
            .checked_mul(UNITS[index].1)
            .and_then(|nanos| total.checked_add(nanos))
            .filter(|nanos| *nanos <= i64::MAX as u128)
            .ok_or_else(|| "duration out of range".to_owned())?;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| "duration out of range")?;
    // The remainder is below one second, so it fits in u32.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way Prometheus prints `model.Duration` (`1m30s`, `2m`, `0s`), for
/// messages.
pub fn format_duration(duration: Duration) -> String {
    let mut nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, unit) in UNITS {
        let count = nanos / unit;
        if count > 0 {
            out.push_str(&format!("{count}{name}"));
            nanos -= count * unit;
        }
    }
    if nanos > 0 {
        // Below a millisecond: not expressible as a Prometheus duration; show it exactly.
        out.push_str(&format!("{nanos}ns"));
    }
    out
}

/// A secret string (key, password, credentials document). Its `Debug` never shows the value,
/// so configurations can be logged safely.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str("\"\"") } else { f.write_str("<redacted>") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "boolean")]
        flag: bool,
        #[serde(default, deserialize_with = "duration")]
        wait: Duration,
        #[serde(default, deserialize_with = "nullable")]
        name: String,
        #[serde(default, deserialize_with = "nullable")]
        count: i64,
    }

    fn probe(yaml: &str) -> Result<Probe, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_follow_prometheus_grammar() {
        let ok = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("90s", Duration::from_secs(90)),
            ("1m30s", Duration::from_secs(90)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3_600)),
            ("1d2h", Duration::from_secs(26 * 3_600)),
            ("1w", Duration::from_secs(7 * 86_400)),
            ("1y", Duration::from_secs(365 * 86_400)),
            ("1s500ms", Duration::from_millis(1_500)),
            ("250ms", Duration::from_millis(250)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "90", "1.5s", "-1s", "1s1m", "1m1m", "1 s", "1x", "s", "1S", "ms1"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_duration("300y"), Err("duration out of range".to_owned()));
        assert!(parse_duration("292y").is_ok());
    }

    #[test]
    fn durations_format_like_prometheus() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1s500ms");
    }

    #[test]
    fn scalars_decode_like_yaml_v2() {
        let p = probe("flag: yes\nwait: 1m30s\nname: 123\ncount: 7\n").unwrap();
        assert!(p.flag);
        assert_eq!(p.wait, Duration::from_secs(90));
        assert_eq!(p.name, "123");
        assert_eq!(p.count, 7);

        let p = probe("flag: Off\nwait: 0\n").unwrap();
        assert!(!p.flag);
        assert_eq!(p.wait, Duration::ZERO);

        // Empty values are Go zero values.
        let p = probe("flag:\nwait: ~\nname:\ncount: null\n").unwrap();
        assert!(!p.flag);
        assert_eq!(p.wait, Duration::ZERO);
        assert_eq!(p.name, "");
        assert_eq!(p.count, 0);

        let err = probe("flag: maybe\n").unwrap_err();
        assert!(err.contains("flag"), "{err}");
        let err = probe("flag: 1\n").unwrap_err();
        assert!(err.contains("flag"), "{err}");
        let err = probe("wait: 90\n").unwrap_err();
        assert!(err.contains("wait") && err.contains("not a valid duration"), "{err}");
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }
}
