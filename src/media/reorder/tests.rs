use super::*;

fn meta(seq: u16, at: Instant) -> PacketMeta {
    PacketMeta {
        seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 7,
        payload_type: 0,
        marker: false,
        arrival: at,
    }
}

impl ReorderBuffer {
    /// push, with forced releases ignored (the tests that care use push).
    fn push_t(&mut self, m: PacketMeta, p: &[u8]) -> bool {
        match self.push(m, p) {
            Push::Stored => true,
            Push::Dropped => false,
            Push::Full => panic!("unexpected full ring"),
        }
    }
}

fn released(b: &mut ReorderBuffer, now: Instant) -> Vec<u16> {
    let mut out = Box::new([0u8; MAX_PAYLOAD]);
    std::iter::from_fn(|| b.pop(now, &mut out).map(|(m, _)| m.seq)).collect()
}

#[test]
fn in_order_passes_straight_through() {
    let t0 = Instant::now();
    let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
    for s in 0..5 {
        assert!(b.push_t(meta(s, t0), &[s as u8; 160]));
        assert_eq!(released(&mut b, t0), [s]);
    }
    assert_eq!(b.stats, ReorderStats::default());
}

#[test]
fn reordered_packets_come_out_in_order() {
    let t0 = Instant::now();
    let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
    b.push_t(meta(10, t0), &[1]);
    assert_eq!(released(&mut b, t0), [10]);
    b.push_t(meta(12, t0), &[3]);
    b.push_t(meta(13, t0), &[4]);
    assert!(released(&mut b, t0).is_empty(), "waiting for 11");
    b.push_t(meta(11, t0 + Duration::from_millis(10)), &[2]);
    assert_eq!(
        released(&mut b, t0 + Duration::from_millis(10)),
        [11, 12, 13]
    );
    assert_eq!(b.stats.reordered, 1);
    assert_eq!(b.stats.lost, 0);
}

#[test]
fn a_gap_is_given_up_after_the_window_and_counted_lost() {
    let t0 = Instant::now();
    let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
    b.push_t(meta(1, t0), &[0]);
    released(&mut b, t0);
    b.push_t(meta(4, t0 + Duration::from_millis(20)), &[0]);
    assert!(released(&mut b, t0 + Duration::from_millis(79)).is_empty());
    assert_eq!(released(&mut b, t0 + Duration::from_millis(80)), [4]);
    assert_eq!(b.stats.lost, 2);
    // 2 arriving now is late
    assert!(!b.push_t(meta(2, t0 + Duration::from_millis(90)), &[0]));
    assert_eq!(
        (b.stats.late, b.stats.duplicated),
        (1, 0),
        "lost then late, not a duplicate"
    );
}

#[test]
fn duplicates_are_dropped() {
    let t0 = Instant::now();
    let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
    b.push_t(meta(1, t0), &[0]);
    b.push_t(meta(3, t0), &[0]);
    assert!(!b.push_t(meta(3, t0), &[0]), "buffered duplicate");
    assert_eq!(released(&mut b, t0), [1]);
    assert!(!b.push_t(meta(1, t0), &[0]), "released duplicate");
    assert_eq!(b.stats.duplicated, 2);
}

#[test]
fn full_ring_gives_up_on_missing_packets() {
    let t0 = Instant::now();
    let mut b = ReorderBuffer::new(4, Duration::from_secs(10));
    b.push_t(meta(0, t0), &[0]);
    released(&mut b, t0);
    // 1 never comes; 2..=6 arrive: the ring (4) cannot wait any longer.
    let mut got = Vec::new();
    for s in 2..=6 {
        let mut out = Box::new([0u8; MAX_PAYLOAD]);
        while b.push(meta(s, t0), &[0]) == Push::Full {
            got.extend(b.pop_oldest(&mut out).map(|(m, _)| m.seq));
        }
        got.extend(released(&mut b, t0));
    }
    // 2..=4 wait for 1; when 5 arrives the ring cannot wait any longer:
    // 1 is given up and everything flows in order.
    assert_eq!(got, [2, 3, 4, 5, 6]);
    assert_eq!(b.stats.lost, 1);
}

#[test]
fn sequence_wrap_and_new_ssrc() {
    let t0 = Instant::now();
    let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
    let mut got = Vec::new();
    for s in [65534u16, 65535, 0, 1] {
        b.push_t(meta(s, t0), &[0]);
        got.extend(released(&mut b, t0));
    }
    assert_eq!(got, [65534, 65535, 0, 1]);
    let mut m = meta(500, t0);
    m.ssrc = 99;
    b.push_t(m, &[0]);
    assert_eq!(released(&mut b, t0), [500], "a new SSRC starts over");
    assert_eq!(b.stats.lost, 0);
}

#[test]
fn payload_is_copied_out() {
    let t0 = Instant::now();
    let mut b = ReorderBuffer::new(4, Duration::from_millis(60));
    b.push_t(meta(1, t0), &[9, 8, 7]);
    let mut out = Box::new([0u8; MAX_PAYLOAD]);
    let (m, len) = b.pop(t0, &mut out).unwrap();
    assert_eq!((m.seq, &out[..len]), (1, &[9u8, 8, 7][..]));
}

#[test]
fn the_in_order_shortcut_changes_nothing_but_the_copies() {
    // A stream with reordering, loss, duplicates and an SSRC change,
    // through push/pop only and through take_in_order first: the same
    // packets come out in the same order, with the same counters.
    let t0 = Instant::now();
    let mut seqs: Vec<(u16, u32)> = (0u16..400).map(|i| (i.wrapping_add(65000), 7)).collect();
    let mut x: u32 = 12345;
    for i in 0..seqs.len() - 1 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        match x % 17 {
            0 => seqs.swap(i, i + 1),
            1 => seqs[i].0 = seqs[i].0.wrapping_add(3),
            2 => seqs[i] = seqs[i.saturating_sub(1)],
            _ => {}
        }
    }
    for s in &mut seqs[300..] {
        s.1 = 8;
    }
    let run = |shortcut: bool, hold: bool| {
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
        if hold {
            b = b.hold_start();
        }
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_PAYLOAD];
        for (i, (seq, ssrc)) in seqs.iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let mut m = meta(*seq, now);
            m.ssrc = *ssrc;
            if shortcut && b.take_in_order(&m) {
                out.push(m.seq);
            } else {
                while b.push(m, &[1, 2, 3]) == Push::Full {
                    let (r, _) = b.pop_oldest(&mut buf).unwrap();
                    out.push(r.seq);
                }
            }
            while let Some((r, _)) = b.pop(now, &mut buf) {
                out.push(r.seq);
            }
        }
        while let Some((r, _)) = b.drain(&mut buf) {
            out.push(r.seq);
        }
        (out, b.stats)
    };
    for hold in [false, true] {
        let (plain, plain_stats) = run(false, hold);
        let (fast, fast_stats) = run(true, hold);
        assert!(plain.len() > 300);
        assert_eq!(fast, plain);
        assert_eq!(fast_stats, plain_stats);
    }
}

/// Pushes, releasing on `Full` as the recorder does; what came out.
fn push_all(b: &mut ReorderBuffer, m: PacketMeta) -> Vec<u16> {
    let mut out = Box::new([0u8; MAX_PAYLOAD]);
    let mut got = Vec::new();
    while b.push(m, &[0]) == Push::Full {
        got.extend(b.pop_oldest(&mut out).map(|(m, _)| m.seq));
    }
    got
}

#[test]
fn a_held_start_takes_a_packet_from_before_it() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut b = ReorderBuffer::new(8, Duration::from_millis(60)).hold_start();
    assert!(b.push_t(meta(11, t0), &[0]));
    assert!(released(&mut b, t0).is_empty(), "the start is held");
    assert!(
        b.push_t(meta(10, ms(2)), &[0]),
        "not late: the start moves back"
    );
    assert!(b.push_t(meta(12, ms(20)), &[0]));
    assert_eq!(b.next_deadline(), Some(ms(60)));
    assert!(released(&mut b, ms(59)).is_empty());
    assert_eq!(released(&mut b, ms(60)), [10, 11, 12]);
    // Then in order as usual; 9 is late now.
    assert!(b.take_in_order(&meta(13, ms(40))));
    assert!(!b.push_t(meta(9, ms(61)), &[0]));
    assert_eq!((b.stats.late, b.stats.lost), (1, 0));
    // A new SSRC is held again.
    let mut m = meta(700, ms(100));
    m.ssrc = 8;
    assert!(push_all(&mut b, m).is_empty());
    assert!(released(&mut b, ms(100)).is_empty());
    assert_eq!(released(&mut b, ms(160)), [700]);
}

#[test]
fn a_new_count_releases_what_the_old_one_left_waiting() {
    let t0 = Instant::now();
    for hold in [false, true] {
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
        if hold {
            b = b.hold_start();
        }
        b.push_t(meta(1, t0), &[0]);
        released(&mut b, t0 + Duration::from_secs(1));
        b.push_t(meta(3, t0), &[0]); // waits for 2
        let mut m = meta(500, t0);
        m.ssrc = 99;
        assert_eq!(push_all(&mut b, m), [3], "released, not thrown away");
        // A jump far ahead in the same SSRC does the same.
        let got = released(&mut b, t0 + Duration::from_secs(2));
        assert_eq!(got, [500]);
        b.push_t(meta(502, t0), &[0]); // waits for 501
        let mut m = meta(30_000, t0);
        m.ssrc = 99;
        assert_eq!(push_all(&mut b, m), [502]);
        assert_eq!(released(&mut b, t0 + Duration::from_secs(3)), [30_000]);
    }
}
