//! `ringest tsdb dump`: prints every sample of a tenant directory (its blocks and its WAL), read with ringest's
//! own reader, in `promtool tsdb dump`'s format (`{labels} value timestamp`, values printed
//! like Go's `%g`), or with values as raw IEEE-754 bits.

use std::io::Write;
use std::path::Path;

use ringest_tsdb::{Options, Tsdb};

/// Formats `v` like Go's `fmt` `%g`: the shortest representation that round-trips, in exponent
/// form when the decimal exponent is < -4 or >= 6 (`strconv.FormatFloat(v, 'g', -1, 64)`).
pub fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Shortest round-trip digits and exponent from Rust's `{:e}`.
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let es = if exp < 0 { "-" } else { "+" };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    if exp < 0 {
        return format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize));
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

/// Writes the dump of the samples of `dir` with `mint <= t <= maxt` to `out`.
pub fn dump(dir: &Path, mint: i64, maxt: i64, bits: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let (db, report) = Tsdb::open_read_only(dir, Options::default())?;
    if let Some(c) = &report.repaired {
        eprintln!("warning: WAL read stopped at {c}");
    }
    for s in db.read_all(mint, maxt)? {
        let labels = s.labels.to_string();
        for (t, v) in s.samples {
            if bits {
                writeln!(out, "{labels} {:016x} {t}", v.to_bits())?;
            } else {
                writeln!(out, "{labels} {} {t}", go_g(v))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::go_g;

    #[test]
    fn formats_like_go_percent_g() {
        assert_eq!(go_g(1.0), "1");
        assert_eq!(go_g(0.1), "0.1");
        assert_eq!(go_g(1e6), "1e+06");
        assert_eq!(go_g(123456.0), "123456");
        assert_eq!(go_g(1234567.0), "1.234567e+06");
        assert_eq!(go_g(1e-5), "1e-05");
        assert_eq!(go_g(0.0001), "0.0001");
        assert_eq!(go_g(-2.5), "-2.5");
        assert_eq!(go_g(f64::NAN), "NaN");
        assert_eq!(go_g(f64::NEG_INFINITY), "-Inf");
        assert_eq!(go_g(5e-324), "5e-324");
        assert_eq!(go_g(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(go_g(-0.0), "-0");
    }
}
