//! The hashring JSON file (`--receive.hashrings-file` / `--receive.hashrings`).
//!
//! The file is a JSON array of hashring objects:
//!
//! | key | meaning |
//! |---|---|
//! | `hashring` | ring name (metric label `name`) |
//! | `tenants` | tenants served; absent or empty ⇒ the ring matches every tenant |
//! | `tenant_matcher_type` | `"exact"` (default, also `""`) or `"glob"` (Go `filepath.Match`) |
//! | `endpoints` | strings (gRPC address) or `{address, capnproto_address, az}` objects |
//! | `algorithm` | `"hashmod"` or `"ketama"`, overrides the global flag; unknown ⇒ hashmod |
//! | `external_labels` | `{name: value}` added to tenants listed literally in `tenants` |
//! | `shuffle_sharding_config` | not supported yet: rejected when `shard_size > 0` |
//!
//! Decoding follows Go's `encoding/json` as Thanos uses it: unknown keys are
//! ignored, key names match case-insensitively, `null` leaves a field at its
//! default. Everything that is ignored or suspicious is returned as a warning
//! in [`ParsedConfig::warnings`] so the caller can log it.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Algorithm;
use crate::error::{HashringError, ring_ref};
use crate::glob::validate_glob;

/// Port appended to the host of a string endpoint to form its Cap'n Proto
/// address.
pub const DEFAULT_CAPNPROTO_PORT: &str = "19391";

/// One receiver of a hashring.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// gRPC address (`--grpc-address` of that receiver), the ring identity.
    pub address: String,
    /// Cap'n Proto replication address.
    pub capnproto_address: String,
    /// Availability zone (ketama only); empty when unset.
    pub az: String,
}

impl Endpoint {
    /// An endpoint given as a plain string in the file: the Cap'n Proto
    /// address defaults to the host part (before the first `:`) plus
    /// `:19391`, and there is no AZ.
    pub fn new(address: impl Into<String>) -> Endpoint {
        let address = address.into();
        let capnproto_address = default_capnproto_address(&address);
        Endpoint { address, capnproto_address, az: String::new() }
    }

    /// The same endpoint in availability zone `az` (ketama spreads replicas over zones).
    pub fn with_az(mut self, az: impl Into<String>) -> Endpoint {
        self.az = az.into();
        self
    }

    /// Whether `addr` is this endpoint's gRPC or Cap'n Proto address (exact
    /// string comparison; used to recognise `--receive.local-endpoint`).
    pub fn has_address(&self, addr: &str) -> bool {
        self.address == addr || self.capnproto_address == addr
    }
}

/// `host:19391` where `host` is everything before the first `:` of
/// `address` (the whole address when it has no `:`). Like Thanos this does
/// not understand bracketed IPv6 addresses.
pub fn default_capnproto_address(address: &str) -> String {
    let host = address.split(':').next().unwrap_or("");
    format!("{host}:{DEFAULT_CAPNPROTO_PORT}")
}

/// How a ring's `tenants` are matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum TenantMatcher {
    /// `"exact"` or `""`: string equality.
    #[default]
    Exact,
    /// `"glob"`: Go `filepath.Match` patterns.
    Glob,
    /// Any other value: accepted by Thanos, but then no tenant ever matches
    /// the ring (a warning is emitted).
    Unknown(String),
}

impl TenantMatcher {
    /// Interprets the `tenant_matcher_type` value.
    pub fn parse(s: &str) -> TenantMatcher {
        match s {
            "" | "exact" => TenantMatcher::Exact,
            "glob" => TenantMatcher::Glob,
            other => TenantMatcher::Unknown(other.to_owned()),
        }
    }

    /// The value as written back to JSON.
    pub fn as_str(&self) -> &str {
        match self {
            TenantMatcher::Exact => "exact",
            TenantMatcher::Glob => "glob",
            TenantMatcher::Unknown(s) => s,
        }
    }
}

/// One hashring of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HashringConfig {
    /// `hashring`: the ring's name (may be empty).
    pub name: String,
    /// `tenants`: empty ⇒ the ring matches every tenant.
    pub tenants: Vec<String>,
    /// `tenant_matcher_type`.
    pub tenant_matcher: TenantMatcher,
    /// `endpoints`, in file order (ketama section order depends on it only
    /// through the endpoint addresses).
    pub endpoints: Vec<Endpoint>,
    /// `algorithm`; `None` ⇒ the global default. An unknown name was already
    /// mapped to [`Algorithm::Hashmod`] (with a warning).
    pub algorithm: Option<Algorithm>,
    /// `external_labels`.
    pub external_labels: BTreeMap<String, String>,
}

impl HashringConfig {
    /// The ring in the file format (endpoints always as objects).
    pub fn to_json(&self) -> Value {
        self.to_json_with_algorithm(self.algorithm)
    }

    pub(crate) fn to_json_with_algorithm(&self, algorithm: Option<Algorithm>) -> Value {
        let mut obj = Map::new();
        obj.insert("hashring".into(), json!(self.name));
        obj.insert("tenants".into(), json!(self.tenants));
        obj.insert("tenant_matcher_type".into(), json!(self.tenant_matcher.as_str()));
        obj.insert("endpoints".into(), json!(self.endpoints));
        if let Some(a) = algorithm {
            obj.insert("algorithm".into(), json!(a.as_str()));
        }
        obj.insert("external_labels".into(), json!(self.external_labels));
        Value::Object(obj)
    }
}

impl Serialize for HashringConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// Result of [`parse_config`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedConfig {
    /// The rings in file order.
    pub rings: Vec<HashringConfig>,
    /// Human readable notes about ignored keys and suspicious values, each
    /// naming its hashring; meant to be logged at warn level.
    pub warnings: Vec<String>,
}

const RING_KEYS: [&str; 7] = [
    "hashring",
    "tenants",
    "tenant_matcher_type",
    "endpoints",
    "algorithm",
    "external_labels",
    "shuffle_sharding_config",
];
const ENDPOINT_KEYS: [&str; 3] = ["address", "capnproto_address", "az"];
const SHUFFLE_KEYS: [&str; 4] = ["shard_size", "cache_size", "zone_awareness_disabled", "overrides"];

/// Parses the hashring JSON file.
///
/// Errors: invalid JSON or a wrong value type ([`HashringError::Parse`]), an
/// empty array or `null` ([`HashringError::Empty`]), an endpoint without
/// address, a malformed glob pattern, or an enabled shuffle sharding config
/// (all wrapped in [`HashringError::Ring`] naming the ring).
pub fn parse_config(json: &str) -> Result<ParsedConfig, HashringError> {
    let value: Value = serde_json::from_str(json).map_err(|e| HashringError::Parse(e.to_string()))?;
    let items = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        other => {
            return Err(HashringError::Parse(format!("expected a JSON array of hashrings, found {}", kind(&other))));
        }
    };
    if items.is_empty() {
        return Err(HashringError::Empty);
    }
    let mut parsed = ParsedConfig::default();
    for (index, item) in items.iter().enumerate() {
        let ring = parse_ring(index, item, &mut parsed.warnings)?;
        parsed.rings.push(ring);
    }
    Ok(parsed)
}

fn parse_ring(index: usize, item: &Value, warnings: &mut Vec<String>) -> Result<HashringConfig, HashringError> {
    let obj = match item {
        Value::Object(obj) => obj,
        Value::Null => {
            warnings.push(format!(
                "hashring #{index} is null: treated as an unnamed ring without endpoints that matches every tenant"
            ));
            return Ok(HashringConfig::default());
        }
        other => {
            return Err(HashringError::Parse(format!("hashring #{index}: expected an object, found {}", kind(other))));
        }
    };

    // The name first, so that every later message can mention it.
    let (fields, unknown) = match_keys(obj, &RING_KEYS);
    let name = match fields[0] {
        Some(v) => expect_str(v, &format!("#{index}"), "hashring")?.to_owned(),
        None => String::new(),
    };
    let rref = ring_ref(index, &name);
    for key in unknown {
        warnings.push(format!("hashring {rref}: unknown key {key:?} ignored"));
    }
    let mut ring = HashringConfig { name, ..HashringConfig::default() };

    if let Some(v) = fields[1] {
        let Value::Array(items) = v else {
            return Err(type_error(&rref, "tenants", "an array of strings", v));
        };
        for t in items {
            match t {
                Value::String(s) => ring.tenants.push(s.clone()),
                Value::Null => ring.tenants.push(String::new()),
                other => return Err(type_error(&rref, "tenants", "an array of strings", other)),
            }
        }
    }

    if let Some(v) = fields[2] {
        ring.tenant_matcher = TenantMatcher::parse(expect_str(v, &rref, "tenant_matcher_type")?);
        if let TenantMatcher::Unknown(m) = &ring.tenant_matcher {
            warnings.push(format!(
                "hashring {rref}: unknown tenant_matcher_type {m:?} (expected \"exact\" or \"glob\"): \
                 no tenant will match this ring"
            ));
        }
    }

    if let Some(v) = fields[3] {
        let Value::Array(items) = v else {
            return Err(type_error(&rref, "endpoints", "an array", v));
        };
        for (i, e) in items.iter().enumerate() {
            let endpoint = parse_endpoint(e, i, &rref, warnings).map_err(|e| e.in_ring(&rref))?;
            ring.endpoints.push(endpoint);
        }
    }
    if ring.endpoints.is_empty() {
        warnings.push(format!("hashring {rref}: no endpoints"));
    }
    let mut seen = HashSet::new();
    for e in &ring.endpoints {
        if !seen.insert(e.address.as_str()) {
            warnings.push(format!("hashring {rref}: endpoint address {:?} is listed more than once", e.address));
        }
    }

    if let Some(v) = fields[4] {
        let algorithm = expect_str(v, &rref, "algorithm")?;
        ring.algorithm = match algorithm {
            "" => None,
            known => match known.parse::<Algorithm>() {
                Ok(a) => Some(a),
                Err(_) => {
                    warnings.push(format!(
                        "hashring {rref}: unrecognizable hashring algorithm {known:?}: falling back to hashmod"
                    ));
                    Some(Algorithm::Hashmod)
                }
            },
        };
    }

    if let Some(v) = fields[5] {
        let Value::Object(labels) = v else {
            return Err(type_error(&rref, "external_labels", "an object of strings", v));
        };
        for (k, val) in labels {
            let val = match val {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => return Err(type_error(&rref, "external_labels", "an object of strings", other)),
            };
            ring.external_labels.insert(k.clone(), val);
        }
    }

    if let Some(v) = fields[6] {
        check_shuffle_sharding(v, &rref, warnings)?;
    }

    if ring.tenant_matcher == TenantMatcher::Glob {
        for t in &ring.tenants {
            validate_glob(t).map_err(|e| e.in_ring(&rref))?;
        }
    }
    Ok(ring)
}

fn parse_endpoint(
    value: &Value,
    index: usize,
    rref: &str,
    warnings: &mut Vec<String>,
) -> Result<Endpoint, HashringError> {
    let (address, mut capnproto_address, az) = match value {
        Value::String(s) => (s.clone(), String::new(), String::new()),
        Value::Null => (String::new(), String::new(), String::new()),
        Value::Object(obj) => {
            let (fields, unknown) = match_keys(obj, &ENDPOINT_KEYS);
            for key in unknown {
                warnings.push(format!("hashring {rref}: endpoint #{index}: unknown key {key:?} ignored"));
            }
            let mut out = [String::new(), String::new(), String::new()];
            for (slot, (field, key)) in out.iter_mut().zip(fields.iter().zip(ENDPOINT_KEYS)) {
                if let Some(v) = field {
                    let Value::String(s) = v else {
                        return Err(HashringError::Parse(format!(
                            "endpoint #{index}: field {key:?}: expected a string, found {}",
                            kind(v)
                        )));
                    };
                    *slot = s.clone();
                }
            }
            let [a, c, z] = out;
            (a, c, z)
        }
        other => {
            return Err(HashringError::Parse(format!(
                "endpoint #{index}: expected a string or an object, found {}",
                kind(other)
            )));
        }
    };
    if address.is_empty() {
        return Err(HashringError::MissingAddress { index });
    }
    if capnproto_address.is_empty() {
        capnproto_address = default_capnproto_address(&address);
        if address.starts_with('[') {
            warnings.push(format!(
                "hashring {rref}: endpoint {address:?} looks like an IPv6 address: the derived \
                 capnproto_address {capnproto_address:?} is unusable, set capnproto_address explicitly"
            ));
        }
    }
    Ok(Endpoint { address, capnproto_address, az })
}

fn check_shuffle_sharding(v: &Value, rref: &str, warnings: &mut Vec<String>) -> Result<(), HashringError> {
    let Value::Object(obj) = v else {
        return Err(type_error(rref, "shuffle_sharding_config", "an object", v));
    };
    let (fields, _) = match_keys(obj, &SHUFFLE_KEYS);
    let shard_size = match fields[0] {
        None => 0,
        Some(v) => v.as_i64().ok_or_else(|| type_error(rref, "shuffle_sharding_config.shard_size", "an integer", v))?,
    };
    if shard_size > 0 {
        return Err(HashringError::ShuffleShardingUnsupported { ring: rref.to_owned() });
    }
    warnings.push(format!(
        "hashring {rref}: shuffle_sharding_config ignored because shard_size is not positive (sharding disabled)"
    ));
    Ok(())
}

/// Matches object keys to `known` field names like Go's `encoding/json`: an
/// exact match wins, otherwise a case-insensitive one. `null` values count
/// as absent. Returns the value per known field and the unknown keys.
fn match_keys<'a, const N: usize>(
    obj: &'a Map<String, Value>,
    known: &[&str; N],
) -> ([Option<&'a Value>; N], Vec<&'a str>) {
    let mut exact = [false; N];
    let mut out: [Option<&'a Value>; N] = [None; N];
    let mut unknown = Vec::new();
    for (key, value) in obj {
        if let Some(i) = known.iter().position(|k| k == key) {
            exact[i] = true;
            out[i] = Some(value);
        }
    }
    for (key, value) in obj {
        if known.contains(&key.as_str()) {
            continue;
        }
        match known.iter().position(|k| k.eq_ignore_ascii_case(key)) {
            Some(i) if !exact[i] => {
                if out[i].is_none() {
                    out[i] = Some(value);
                }
            }
            Some(_) => {}
            None => unknown.push(key.as_str()),
        }
    }
    for v in out.iter_mut() {
        if matches!(v, Some(Value::Null)) {
            *v = None;
        }
    }
    (out, unknown)
}

fn expect_str<'a>(v: &'a Value, rref: &str, field: &str) -> Result<&'a str, HashringError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(type_error(rref, field, "a string", other)),
    }
}

fn type_error(rref: &str, field: &str, expected: &str, found: &Value) -> HashringError {
    HashringError::Parse(format!("hashring {rref}: field {field:?}: expected {expected}, found {}", kind(found)))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_capnp() {
        assert_eq!(default_capnproto_address("receive-1.receive:10901"), "receive-1.receive:19391");
        assert_eq!(default_capnproto_address("node1"), "node1:19391");
        assert_eq!(default_capnproto_address("a:b:c"), "a:19391");
        assert_eq!(default_capnproto_address("[::1]:10901"), "[:19391");
    }

    #[test]
    fn key_matching() {
        let v: Value = serde_json::from_str(r#"{"HashRing":"x","tenants":null,"foo":1,"ENDPOINTS":[]}"#).unwrap();
        let Value::Object(obj) = v else { unreachable!() };
        let (f, unknown) = match_keys(&obj, &RING_KEYS);
        assert_eq!(f[0], Some(&json!("x")));
        assert_eq!(f[1], None);
        assert_eq!(f[3], Some(&json!([])));
        assert_eq!(unknown, vec!["foo"]);

        let v: Value = serde_json::from_str(r#"{"Hashring":"a","hashring":"b"}"#).unwrap();
        let Value::Object(obj) = v else { unreachable!() };
        let (f, unknown) = match_keys(&obj, &RING_KEYS);
        assert_eq!(f[0], Some(&json!("b")));
        assert!(unknown.is_empty());
    }
}
