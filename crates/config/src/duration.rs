//! Gateway API durations: a subset of Go's format, `1h`, `30s`, `500ms`, `1m30s`.

use std::time::Duration;

/// Parses a Gateway API `Duration` (GEP-2257): one to four `<number><unit>`
/// parts, units `h`, `m`, `s`, `ms`, numbers of at most five digits.
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_with(text, 4, 5)
}

/// Parses the looser Go duration used by `strait echo ?delay=`: any number of
/// parts, fractional numbers allowed (`1.5s`).
pub fn parse_go(text: &str) -> Result<Duration, String> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    // As Go's ParseDuration: a bare zero needs no unit.
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit"))?;
        let number: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("{text:?}: bad number"))?;
        rest = &rest[num_end..];
        let (unit, len) = unit_of(rest).ok_or_else(|| format!("{text:?}: unknown unit"))?;
        rest = &rest[len..];
        total += Duration::from_secs_f64(number * unit.as_secs_f64());
    }
    Ok(total)
}

fn unit_of(rest: &str) -> Option<(Duration, usize)> {
    const UNITS: [(&str, Duration); 6] = [
        ("ms", Duration::from_millis(1)),
        ("us", Duration::from_micros(1)),
        ("ns", Duration::from_nanos(1)),
        ("h", Duration::from_secs(3600)),
        ("m", Duration::from_secs(60)),
        ("s", Duration::from_secs(1)),
    ];
    UNITS
        .iter()
        .find(|(name, _)| rest.starts_with(name))
        .map(|(name, d)| (*d, name.len()))
}

fn parse_with(text: &str, max_parts: usize, max_digits: usize) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like \"10s\", \"500ms\" or \"1m30s\"");
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if num_end == 0 || num_end > max_digits {
            return Err(bad());
        }
        let number: u64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let (unit, len) = unit_of(rest).ok_or_else(bad)?;
        if unit < Duration::from_millis(1) {
            return Err(bad());
        }
        rest = &rest[len..];
        total += unit * u32::try_from(number).map_err(|_| bad())?;
        parts += 1;
        if parts > max_parts {
            return Err(bad());
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_api_durations() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "123456s",
            "1h1h1h1h1h",
            "10us",
            "-1s",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go("100ms"), Ok(Duration::from_millis(100)));
        assert!(parse_go("fast").is_err());
        // "0 is never", as the flags say: Go takes a bare zero.
        assert_eq!(parse_go("0"), Ok(Duration::ZERO));
        assert!(parse_go("5").is_err());
    }
}
