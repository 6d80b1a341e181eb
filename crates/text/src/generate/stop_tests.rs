use super::*;

fn criteria() -> StopCriteria {
    StopCriteria {
        stop_token_ids: vec![2, 128009],
        stop_strings: vec!["\n\nUser:".into(), "###".into(), "##".into()],
        max_new_tokens: Some(5),
    }
}

#[test]
fn stop_tokens_strings_and_budget() {
    let c = criteria();
    assert_eq!(c.check(&[], ""), None);
    assert_eq!(c.check(&[10, 11], "Hello"), None);
    assert_eq!(c.check(&[10, 128009], "Hello"), Some(Stop { reason: StopReason::Token(128009), text_len: 5 }));
    // The stop string is cut with what follows it.
    assert_eq!(
        c.check(&[10, 11, 12], "Sure.\n\nUser: more"),
        Some(Stop { reason: StopReason::String("\n\nUser:".into()), text_len: 5 })
    );
    // The earliest match wins; at the same place, the longest.
    assert_eq!(c.check(&[1], "a ### b\n\nUser:"), Some(Stop { reason: StopReason::String("###".into()), text_len: 2 }));
    assert_eq!(c.check(&[1, 3, 4, 5, 6], "abcde"), Some(Stop { reason: StopReason::MaxNewTokens, text_len: 5 }));
    assert_eq!(c.check(&[1, 3, 4, 5], "abcd"), None);
    // A stop token wins over the budget running out on the same step.
    assert_eq!(c.check(&[1, 1, 1, 1, 2], "xxxx"), Some(Stop { reason: StopReason::Token(2), text_len: 4 }));
    assert_eq!(StopReason::MaxNewTokens.finish_reason(), "length");
    assert_eq!(StopReason::Token(2).finish_reason(), "stop");
    // No budget: only tokens and strings stop.
    let open = StopCriteria::new(vec![0]);
    assert_eq!(open.check(&vec![7; 10_000], "text"), None);
}

#[test]
fn streaming_holds_back_a_possible_stop_string() {
    let c = StopCriteria { stop_strings: vec!["<|end|>".into(), "é!".into()], ..Default::default() };
    assert_eq!(c.streamable_len("Hello"), 5);
    assert_eq!(c.streamable_len("Hello <|"), 6);
    assert_eq!(c.streamable_len("Hello <|end"), 6);
    assert_eq!(c.streamable_len("Hello <|end|> tail"), 6);
    // A multi-byte character at the end: held back whole, never split.
    assert_eq!(c.streamable_len("café"), "caf".len());
    assert_eq!(c.streamable_len("<|x"), 3);
    assert_eq!(StopCriteria::default().streamable_len("anything <|"), 11);
}
