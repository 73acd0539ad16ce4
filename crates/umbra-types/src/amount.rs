/// A token amount in the smallest unit (10^-12 of a whole token).
pub type Amount = u128;

/// Decimal places of the native token. Twelve keeps the whole supply within `u128` with room for
/// intermediate products in share arithmetic, and is recorded in genesis.
pub const DECIMALS: u32 = 12;
/// One whole token in the smallest unit.
pub const UNIT: Amount = 1_000_000_000_000;
/// The fixed maximum supply: one billion whole tokens.
pub const MAX_SUPPLY: Amount = 1_000_000_000 * UNIT;
/// The native token's symbol.
pub const SYMBOL: &str = "UMB";

/// Why a decimal amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a decimal number.
    #[error("'{0}' is not an amount (expected a decimal like 12.5)")]
    NotANumber(String),
    /// More fractional digits than the token has.
    #[error("'{0}' has more than {DECIMALS} decimal places")]
    TooPrecise(String),
    /// Larger than the maximum supply.
    #[error("'{0}' exceeds the maximum supply of 1,000,000,000 {SYMBOL}")]
    TooLarge(String),
}

/// Parses a decimal amount of whole tokens (`"12.5"`) into the smallest unit.
pub fn parse_amount(s: &str) -> Result<Amount, AmountError> {
    let t = s.trim();
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t, ""),
    };
    let digits = |x: &str| x.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(AmountError::NotANumber(s.to_string()));
    }
    if frac.len() > DECIMALS as usize {
        return Err(AmountError::TooPrecise(s.to_string()));
    }
    let too_large = || AmountError::TooLarge(s.to_string());
    let whole_units: Amount = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
    let mut frac_units: Amount = 0;
    if !frac.is_empty() {
        let padded = format!("{frac:0<width$}", width = DECIMALS as usize);
        frac_units = padded.parse().map_err(|_| AmountError::NotANumber(s.to_string()))?;
    }
    let total = whole_units.checked_mul(UNIT).and_then(|w| w.checked_add(frac_units)).ok_or_else(too_large)?;
    if total > MAX_SUPPLY {
        return Err(too_large());
    }
    Ok(total)
}

/// Formats an amount in whole tokens with trailing zeros trimmed (`12.5`).
pub fn format_amount(a: Amount) -> String {
    let whole = a / UNIT;
    let frac = a % UNIT;
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:0>width$}", width = DECIMALS as usize);
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_amounts_parse_to_the_smallest_unit() {
        assert_eq!(parse_amount("12.5"), Ok(12 * UNIT + UNIT / 2));
        assert_eq!(parse_amount("0.000000000001"), Ok(1));
        assert_eq!(parse_amount("1000000000"), Ok(MAX_SUPPLY));
        assert_eq!(parse_amount(".5"), Ok(UNIT / 2));
    }

    #[test]
    fn nonsense_amounts_are_refused() {
        assert!(matches!(parse_amount("abc"), Err(AmountError::NotANumber(_))));
        assert!(matches!(parse_amount("-1"), Err(AmountError::NotANumber(_))));
        assert!(matches!(parse_amount(""), Err(AmountError::NotANumber(_))));
        assert!(matches!(parse_amount("1.0000000000001"), Err(AmountError::TooPrecise(_))));
        assert!(matches!(parse_amount("1000000000.1"), Err(AmountError::TooLarge(_))));
        assert!(matches!(parse_amount("999999999999999999999999999999999999999999"), Err(AmountError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_back_the_amount(a in 0..=MAX_SUPPLY) {
            prop_assert_eq!(parse_amount(&format_amount(a)), Ok(a));
        }
    }
}
