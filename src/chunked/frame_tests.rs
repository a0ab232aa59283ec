//! `in_place`: which frames a restore unpacks straight into the unit.

use super::*;

fn chunk(n: u8, skip: u32, len: u32) -> Chunk {
    Chunk {
        id: [n; 32],
        pack: 0,
        offset: 0,
        stored: 1,
        frame_len: 9,
        skip,
        len,
    }
}

/// A frame goes whole into the unit where its chunks lie one after the other; a chunk that
/// repeats a covered part is copied after; a gap, a part missing or a chunk reaching past
/// what is covered leaves the frame to be unpacked apart.
#[test]
fn a_frame_is_unpacked_in_place_only_where_its_chunks_cover_it_in_order() {
    let chunks = [
        chunk(1, 0, 3),
        chunk(2, 3, 3),
        chunk(3, 6, 3),
        chunk(1, 0, 3),
    ];
    let frame = chunks[0];
    let whole = in_place(&frame, &[0, 1, 2, 3], &chunks, &[0, 3, 6, 9]);
    assert_eq!(whole, Some((0..9, vec![0, 1, 2], vec![3])));
    let later = in_place(&frame, &[0, 1, 2], &chunks, &[4, 7, 10]);
    assert_eq!(later, Some((4..13, vec![0, 1, 2], vec![])));
    // Another chunk between two of the frame's.
    assert_eq!(in_place(&frame, &[0, 1, 2], &chunks, &[0, 3, 7]), None);
    // The frame's last chunk is not in the unit.
    assert_eq!(in_place(&frame, &[0, 1], &chunks, &[0, 3]), None);
    // A chunk that reaches past what is covered so far, or past the frame's end (its copy
    // would read beyond the frame).
    let odd = [chunk(1, 0, 3), chunk(4, 2, 3), chunk(2, 3, 6)];
    assert_eq!(in_place(&frame, &[0, 1, 2], &odd, &[0, 3, 6]), None);
    let past = [chunk(1, 0, 3), chunk(2, 3, 6), chunk(4, 7, 3)];
    assert_eq!(in_place(&frame, &[0, 1, 2], &past, &[0, 3, 9]), None);
    assert_eq!(in_place(&frame, &[], &chunks, &[]), None);
}
