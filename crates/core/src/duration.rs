//! Human durations for the command line: `90s`, `30m`, `24h`, `30d`.

use std::fmt;
use std::str::FromStr;

/// A whole number of seconds written with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration {
    seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration; write a number and a unit, like 90s, 30m, 24h or 30d")]
pub struct InvalidDuration(String);

impl HumanDuration {
    pub fn from_seconds(seconds: u64) -> Self {
        Self { seconds }
    }

    pub fn seconds(self) -> u64 {
        self.seconds
    }
}

impl FromStr for HumanDuration {
    type Err = InvalidDuration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidDuration(s.to_string());
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = s.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        // Ten years is far beyond any sensible key expiry or window; refusing more keeps
        // every later addition to a timestamp free of overflow.
        let seconds = number
            .checked_mul(scale)
            .filter(|s| *s <= 10 * 366 * 86_400)
            .ok_or_else(bad)?;
        Ok(Self { seconds })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3_600) {
            write!(f, "{}h", s / 3_600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("90s".parse::<HumanDuration>().unwrap().seconds(), 90);
        assert_eq!("30m".parse::<HumanDuration>().unwrap().seconds(), 1800);
        assert_eq!("24h".parse::<HumanDuration>().unwrap().seconds(), 86_400);
        assert_eq!("30d".parse::<HumanDuration>().unwrap().seconds(), 2_592_000);
        assert_eq!("0s".parse::<HumanDuration>().unwrap().seconds(), 0);
        for bad in ["", "30", "d", "3x", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
        assert_eq!(HumanDuration::from_seconds(7200).to_string(), "2h");
    }
}
