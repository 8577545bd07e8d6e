//! Value syntaxes of Thanos flags: Prometheus durations (`model.Duration`), base-2 byte sizes
//! (`units.ParseBase2Bytes`) and Go-quoted strings (`strconv.Unquote`).

/// Duration units from largest to smallest, in milliseconds.
const DURATION_UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus duration (`15d`, `1h30m`, `0`, `500ms`) into milliseconds.
///
/// Units `y` (365d), `w`, `d`, `h`, `m`, `s`, `ms`; integers only; each unit at most once and
/// from largest to smallest, exactly like `model.ParseDuration`.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    if s == "0" {
        return Ok(0);
    }
    const UNITS: [(&str, u64); 7] = DURATION_UNITS;
    let invalid = || format!("not a valid duration string: {s:?}");
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut last_unit = -1i32;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        let n: u64 = s[start..i].parse().map_err(|_| "duration out of range".to_string())?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        if unit.is_empty() {
            return Err(invalid());
        }
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {s:?}"));
        };
        if pos as i32 <= last_unit {
            return Err(invalid());
        }
        last_unit = pos as i32;
        let ms = n.checked_mul(UNITS[pos].1).ok_or("duration out of range")?;
        total = total.checked_add(ms).ok_or("duration out of range")?;
    }
    if total > i64::MAX as u64 {
        return Err("duration out of range".into());
    }
    Ok(total)
}

/// Formats milliseconds the way Prometheus prints a duration (`2h`, `15d`, `1h30m`, `0s`).
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (u, size) in DURATION_UNITS {
        if rest >= size {
            out.push_str(&format!("{}{u}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Parses a base-2 byte size (`512MB`, `1GiB`, `1.5GB`, `1GB512MB`, `0`) as Thanos does.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    const UNITS: [(&str, u32); 13] = [
        ("EiB", 60),
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
        ("EB", 60),
        ("PB", 50),
        ("TB", 40),
        ("GB", 30),
        ("MB", 20),
        ("KB", 10),
        ("B", 0),
    ];
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return Err(format!("units: invalid size {s:?}"));
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("units: invalid size {s:?}"));
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| format!("units: invalid size {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        let Some((_, shift)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("units: unknown unit {unit} in {s}"));
        };
        total += n * (1u64 << shift) as f64;
        rest = &rest[unit_end..];
    }
    if total > u64::MAX as f64 {
        return Err(format!("units: size {s:?} is out of range"));
    }
    Ok(total as u64)
}

/// Go's `strconv.Unquote` for the forms a `--label` value takes: `"..."` with Go escapes, or
/// a raw `` `...` `` string.
pub fn go_unquote(s: &str) -> Result<String, String> {
    let err = || "unquote label value: invalid syntax".to_string();
    if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        let inner = &s[1..s.len() - 1];
        if inner.contains('`') {
            return Err(err());
        }
        return Ok(inner.replace('\r', ""));
    }
    if s.len() < 2 || !s.starts_with('"') || !s.ends_with('"') {
        return Err(err());
    }
    let inner = &s[1..s.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return Err(err()),
            '\\' => {
                let e = chars.next().ok_or_else(err)?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{07}'),
                    'b' => out.push('\u{08}'),
                    'f' => out.push('\u{0c}'),
                    'v' => out.push('\u{0b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => return Err(err()),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(n).collect();
                        if hex.len() != n {
                            return Err(err());
                        }
                        let v = u32::from_str_radix(&hex, 16).map_err(|_| err())?;
                        if e == 'x' {
                            if v > 0x7f {
                                return Err(err()); // a raw byte that is not UTF-8 on its own
                            }
                            out.push(v as u8 as char);
                        } else {
                            out.push(char::from_u32(v).ok_or_else(err)?);
                        }
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let d = chars.next().and_then(|c| c.to_digit(8)).ok_or_else(err)?;
                            v = v * 8 + d;
                        }
                        if v > 0x7f {
                            return Err(err());
                        }
                        out.push(v as u8 as char);
                    }
                    _ => return Err(err()),
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_prometheus() {
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("15d"), Ok(15 * 86_400_000));
        assert_eq!(parse_duration_ms("1w"), Ok(7 * 86_400_000));
        assert_eq!(parse_duration_ms("1y"), Ok(365 * 86_400_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1m500ms"), Ok(60_500));
        for bad in ["", "1", "1.5h", "-1h", "30m1h", "1h1h", "h", "5 m"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(parse_duration_ms("1x").unwrap_err(), "unknown unit \"x\" in duration \"1x\"");
        assert_eq!(format_duration_ms(7_200_000), "2h");
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(0), "0s");
    }

    #[test]
    fn byte_sizes_like_thanos() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1KB"), Ok(1024));
        assert_eq!(parse_bytes("1KiB"), Ok(1024));
        assert_eq!(parse_bytes("1.5GB"), Ok(3 << 29));
        assert_eq!(parse_bytes("1GB512MB"), Ok((1 << 30) + (512 << 20)));
        assert_eq!(parse_bytes("10B"), Ok(10));
        assert!(parse_bytes("512").is_err());
        assert!(parse_bytes("1kB").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn unquote_like_go() {
        assert_eq!(go_unquote("\"abc\""), Ok("abc".into()));
        assert_eq!(go_unquote("\"a\\\"b\\n\""), Ok("a\"b\n".into()));
        assert_eq!(go_unquote("`raw\\n`"), Ok("raw\\n".into()));
        assert_eq!(go_unquote("\"\\u00e9\\x41\""), Ok("éA".into()));
        assert!(go_unquote("abc").is_err());
        assert!(go_unquote("\"abc").is_err());
        assert!(go_unquote("\"a\"b\"").is_err());
    }
}
