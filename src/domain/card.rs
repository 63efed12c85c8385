//! Card numbers never enter recur: free text that holds one (13 to 19 digits, written together
//! or in groups split by single spaces or dashes, passing the Luhn check) is refused, so nobody
//! can put a card number in a customer's name or a memo by mistake.

/// Whether `text` holds something that reads as a payment card number: 13 to 19 digits
/// written together, or in groups of 4 to 6 split by single spaces or dashes (4-4-4-4,
/// 4-6-5), passing the Luhn check, standing as a word of its own (digits inside an id such as
/// `req_01a23c4664717257827e` are not a card). A short group written after a card
/// ("… 4242 12/30", "… 4242 123") does not hide it, short numbers side by side ("rooms 109
/// 110 111") never join into one, and a longer run of groups (an IBAN) is not searched for a
/// card inside it.
pub fn holds_card_number(text: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut digits: Vec<u8> = Vec::with_capacity(32);
    // Where the current group starts in `digits`.
    let mut group_start = 0;
    let mut separated = false;
    // Whether the character before the run is not part of a word.
    let mut bounded = true;
    let mut previous = ' ';
    // Whether the run ending here, or the run without its last group when that group is too
    // short to be part of a card, is a card.
    let ends_a_card = |digits: &[u8], group_start: usize| {
        let short_tail = digits.len() - group_start < 4;
        is_card(digits) || (short_tail && is_card(&digits[..group_start]))
    };
    for c in text.chars() {
        match c {
            '0'..='9' => {
                if digits.is_empty() {
                    bounded = !word(previous);
                    group_start = 0;
                }
                digits.push(c as u8 - b'0');
                separated = false;
            }
            ' ' | '-' if !digits.is_empty() && !separated => {
                let group = digits.len() - group_start;
                if !(4..=6).contains(&group) {
                    if bounded && ends_a_card(&digits, group_start) {
                        return true;
                    }
                    digits.clear();
                }
                group_start = digits.len();
                separated = true;
            }
            _ => {
                // A run followed by a separator ends at the separator.
                let ends_here = separated || !word(c);
                if bounded && ends_here && !digits.is_empty() && ends_a_card(&digits, group_start) {
                    return true;
                }
                digits.clear();
                separated = false;
            }
        }
        previous = c;
    }
    bounded && !digits.is_empty() && ends_a_card(&digits, group_start)
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

        #[test]
        fn short_numbers_are_never_cards(body in prop::collection::vec(0u8..10, 0..12)) {
            let text: String = body.iter().map(u8::to_string).collect();
            prop_assert!(!holds_card_number(&text));
        }
    }
}
