//! Card numbers never enter recur: free text that holds one (13 to 19 digits, written together
//! or in groups split by single spaces or dashes, passing the Luhn check) is refused, so nobody
//! can put a card number in a customer's name or a memo by mistake.

/// Whether `text` holds something that reads as a payment card number: 13 to 19 digits
/// written together, or in groups of 4 to 6 split by single spaces or dashes (4-4-4-4,
/// 4-6-5), passing the Luhn check, in a number standing as a word of its own. Within such a
/// number every stretch of whole groups is tried, so digits written before or after a card
/// ("2024 4242 …", "… 4242 0330", "… 4242 12/30") do not hide it; a number glued to letters
/// (an id such as `req_01a23c46…`, an IBAN after its country code) or continuing a run of
/// short groups ("rooms 109 110 111", "PL61 1090 …") is never searched.
pub fn holds_card_number(text: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut run = Run::default();
    let mut previous = ' ';
    let mut separated = false;
    // Digits after a short group belong to a longer number (an IBAN, an account number).
    let mut continues = false;
    for c in text.chars() {
        match c {
            '0'..='9' => {
                if run.digits.is_empty() {
                    run.bounded = !continues && !word(previous);
                    run.groups.clear();
                    run.groups.push(0);
                }
                run.digits.push(c as u8 - b'0');
                separated = false;
            }
            ' ' | '-' if !run.digits.is_empty() && !separated => {
                let group = run.digits.len() - run.groups.last().copied().unwrap_or(0);
                if (4..=6).contains(&group) {
                    run.groups.push(run.digits.len());
                } else {
                    if run.holds_card() {
                        return true;
                    }
                    run.digits.clear();
                    continues = true;
                }
                separated = true;
            }
            _ => {
                // A run followed by a separator ends at the separator.
                if (separated || !word(c)) && run.holds_card() {
                    return true;
                }
                run.digits.clear();
                continues = false;
                separated = false;
            }
        }
        previous = c;
    }
    run.holds_card()
}

/// A number being read: its digits and where each of its groups starts.
#[derive(Default)]
struct Run {
    digits: Vec<u8>,
    groups: Vec<usize>,
    /// Whether it stands as a word of its own (nothing glued before it).
    bounded: bool,
}

impl Run {
    /// Whether some stretch of whole groups is a card number.
    fn holds_card(&self) -> bool {
        if !self.bounded || self.digits.is_empty() {
            return false;
        }
        let mut cuts: Vec<usize> = self
            .groups
            .iter()
            .copied()
            .filter(|&g| g < self.digits.len())
            .collect();
        cuts.push(self.digits.len());
        cuts.iter().enumerate().any(|(i, &from)| {
            cuts[i + 1..]
                .iter()
                .any(|&to| is_card(&self.digits[from..to]))
        })
    }
}

fn is_card(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len()) && luhn(digits)
}

/// The Luhn (mod 10) check of a digit string, rightmost digit the check digit.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn test_cards_are_found_however_written() {
        for text in [
            "4242424242424242",
            "card 4242 4242 4242 4242 exp 12/30",
            "4000-0566-5566-5556",
            "Amex 378282246310005",
            "5555555555554444.",
            "4242 4242 4242 4242 123",
            "4242-4242-4242-4242 12 30",
            "3782 822463 10005",
            "4242 4242 4242 4242 0330",
            "3782 822463 10005 1234",
            "2024 4242 4242 4242 4242",
        ] {
            assert!(holds_card_number(text), "{text}");
        }
    }

    #[test]
    fn other_numbers_are_not_cards() {
        for text in [
            "4242424242424241",
            "DE89 3704 0044 0532 0130 00",
            "PL61 1090 1014 0000 0712 1981 2874",
            "+49 30 1234 5678",
            "INV-2027-000123",
            "2027-01-01T00:00:00Z",
            "4242  4242 4242 4242",
            "Order 12345",
            "Rooms 109 110 111 112 113",
            "call 12 34 56 78 90 12 34",
            "req_01a23c4664717257827eb0c10c4dc217",
            "SKU4242424242424242",
            "DE21 8439 7324 7020 8721 28",
            "IBAN: GB33 BUKB 2020 1555 5555 55",
        ] {
            assert!(!holds_card_number(text), "{text}");
        }
    }

    /// A digit string of `body` digits completed with its Luhn check digit.
    fn with_check_digit(body: &[u8]) -> Vec<u8> {
        (0..10u8)
            .map(|c| {
                let mut v = body.to_vec();
                v.push(c);
                v
            })
            .find(|v| luhn(v))
            .expect("one check digit fits")
    }

    proptest! {
        #[test]
        fn every_luhn_valid_number_of_card_length_is_found(
            body in prop::collection::vec(0u8..10, 12..19),
            group in 0usize..4,
            sep in prop::sample::select(vec!["", " ", "-"]),
        ) {
            let digits = with_check_digit(&body);
            let text: String = digits
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let lead = if group > 0 && i > 0 && i % (group + 3) == 0 { sep } else { "" };
                    format!("{lead}{d}")
                })
                .collect();
            let sentence = format!("paid with {text} today");
            prop_assert!(holds_card_number(&sentence), "{}", sentence);
        }

        /// IBANs (letters, then 2 check digits, then the account in groups of 4) are never
        /// taken for cards, whatever their digits.
        #[test]
        fn ibans_are_never_cards(
            country in "[A-Z]{2}",
            check in 10u8..100,
            groups in prop::collection::vec(prop::collection::vec(0u8..10, 4), 3..7),
            tail in prop::collection::vec(0u8..10, 0..4),
        ) {
            let digits = |g: &Vec<u8>| g.iter().map(u8::to_string).collect::<String>();
            let mut iban = format!("{country}{check}");
            for g in &groups {
                iban.push(' ');
                iban.push_str(&digits(g));
            }
            if !tail.is_empty() {
                iban.push(' ');
                iban.push_str(&digits(&tail));
            }
            let footer = format!("Bank: {iban}, BIC DEUTDEFF");
            prop_assert!(!holds_card_number(&footer), "{}", footer);
        }

        #[test]
        fn short_numbers_are_never_cards(body in prop::collection::vec(0u8..10, 0..12)) {
            let text: String = body.iter().map(u8::to_string).collect();
            prop_assert!(!holds_card_number(&text));
        }
    }
}
