use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Used when an amount arrives without a currency.
    pub const DEFAULT: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_bytes() {
            [a, b, c] if s.bytes().all(|b| b.is_ascii_uppercase()) => Ok(Currency([*a, *b, *c])),
            _ => Err(MoneyError::Currency(s)),
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoneyError {
    #[error("expected a three-letter ISO 4217 currency code such as \"EUR\", got {0:?}")]
    Currency(String),
    #[error("expected a finite, non-negative amount below 10^15, got {0}")]
    Amount(f64),
}

/// An amount of money in minor units (cents) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// Converts a decimal amount in major units (as it arrives in JSON) to minor units.
    pub fn from_major(amount: f64, currency: Currency) -> Result<Self, MoneyError> {
        if !amount.is_finite() || !(0.0..1e15).contains(&amount) {
            return Err(MoneyError::Amount(amount));
        }
        Ok(Self {
            minor: (amount * 100.0).round() as i64,
            currency,
        })
    }

    pub fn major(&self) -> f64 {
        self.minor as f64 / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_must_be_three_upper_case_letters() {
        assert!(Currency::try_from("EUR".to_owned()).is_ok());
        assert!(Currency::try_from("eur".to_owned()).is_err());
        assert!(Currency::try_from("EURO".to_owned()).is_err());
    }

    #[test]
    fn major_units_round_to_cents() {
        let m = Money::from_major(12_000.505, Currency::DEFAULT).unwrap();
        assert_eq!(m.minor, 1_200_051);
        assert!(Money::from_major(-1.0, Currency::DEFAULT).is_err());
        assert!(Money::from_major(f64::NAN, Currency::DEFAULT).is_err());
    }
}
