//! Baseline JPEG decoding that reproduces libjpeg-turbo's default output exactly:
//! the accurate integer IDCT (`JDCT_ISLOW`), "fancy" triangle-filter chroma
//! upsampling and its fixed-point YCbCr to RGB tables. OpenSlide, QuPath (through
//! OpenSlide or Bio-Formats' libjpeg-turbo) and tifffile all decode slides that way,
//! so dirascope sees the pixels they see, and its tile scores match a reference
//! pipeline's to float noise rather than to decoder noise.
//!
//! It handles what scanners write: 8-bit Huffman sequential frames (SOF0/SOF1), one
//! or three components, 4:4:4 / 4:2:2 / 4:2:0 / 4:4:0 sampling, restart intervals,
//! abbreviated streams with spliced-in tables. Anything else is
//! [`JpegFault::Unsupported`] and the caller hands it to another decoder. It never
//! panics on malformed input and allocates only after checking the frame size.

use std::sync::Arc;

use super::grid::JpegColour;

/// A decoded frame: `width * height * channels` samples, channels 1 (grey) or 3 (RGB).
#[derive(Debug)]
pub(crate) struct Decoded {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Why a stream did not decode here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JpegFault {
    /// The frame declares more pixels than the caller allows.
    TooLarge(u64),
    /// Valid JPEG this decoder does not implement (progressive, arithmetic, 12-bit...).
    Unsupported(String),
    /// The stream is malformed.
    Bad(String),
}

type Result<T> = std::result::Result<T, JpegFault>;

fn bad<T>(why: impl Into<String>) -> Result<T> {
    Err(JpegFault::Bad(why.into()))
}

/// Zig-zag position to natural (row-major) position, with libjpeg's 16 extra entries
/// so a corrupt run past coefficient 63 lands on 63 instead of out of bounds.
const NATURAL_ORDER: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

/// Decodes one complete JPEG stream (tables included).
pub(crate) fn decode(stream: &[u8], colour: JpegColour, max_pixels: u64) -> Result<Decoded> {
    decode_with(stream, &Tables::default(), colour, max_pixels)
}

/// The quantisation and Huffman tables of a tables-only stream (a TIFF page's
/// JPEGTables), parsed once and shared by every tile of the page instead of
/// being spliced into each tile's stream and parsed again.
#[derive(Default, Clone)]
pub(crate) struct Tables {
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Arc<Huffman>>; 4],
    ac: [Option<Arc<Huffman>>; 4],
}

impl Tables {
    /// Parses an abbreviated stream (SOI, DQT/DHT segments, EOI).
    pub(crate) fn parse(stream: &[u8]) -> Result<Tables> {
        let mut parser = Parser::new(stream, &Tables::default());
        parser.run(0)?;
        if parser.frame.is_some() || parser.scans > 0 {
            return bad("shared tables hold image data");
        }
        Ok(Tables {
            quant: parser.quant,
            dc: parser.dc,
            ac: parser.ac,
        })
    }
}

/// Decodes one JPEG stream whose missing tables come from `tables` (tables the
/// stream defines itself replace them, as they would after a splice).
pub(crate) fn decode_with(
    stream: &[u8],
    tables: &Tables,
    colour: JpegColour,
    max_pixels: u64,
) -> Result<Decoded> {
    let mut parser = Parser::new(stream, tables);
    parser.run(max_pixels)?;
    let frame = match parser.frame.take() {
        Some(f) if parser.scans > 0 => f,
        _ => return bad("no image data (no frame header or no scan)"),
    };
    let colour = match (frame.components.len(), colour) {
        (1, _) => Output::Grey,
        (_, JpegColour::Rgb) => Output::Rgb,
        (_, JpegColour::YCbCr) => Output::YCbCr,
        (_, JpegColour::FromStream) => parser.stream_colour(&frame),
    };
    Ok(frame.finish(colour))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Grey,
    Rgb,
    YCbCr,
}

struct Huffman {
    /// For the next 9 bits of the stream: code length (0 = longer than 9) and value.
    fast: Vec<(u8, u8)>,
    /// Canonical decoding for longer codes: largest code of each length (-1: none),
    /// and the offset from a code to its index in `values`.
    max_code: [i32; 18],
    val_offset: [i32; 17],
    values: Vec<u8>,
}

const FAST_BITS: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Huffman> {
        let mut fast = vec![(0u8, 0u8); 1 << FAST_BITS];
        let mut max_code = [-1i32; 18];
        let mut val_offset = [0i32; 17];
        let mut code: i32 = 0;
        let mut k = 0usize;
        for len in 1..=16usize {
            let n = counts[len - 1] as usize;
            val_offset[len] = k as i32 - code;
            for _ in 0..n {
                if code >= (1 << len) {
                    return bad("Huffman table has more codes than fit their lengths");
                }
                if len as u32 <= FAST_BITS {
                    let shift = FAST_BITS - len as u32;
                    let first = (code as usize) << shift;
                    for entry in &mut fast[first..first + (1 << shift)] {
                        *entry = (len as u8, values[k]);
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                max_code[len] = code - 1;
            }
            code <<= 1;
        }
        max_code[17] = i32::MAX;
        Ok(Huffman {
            fast,
            max_code,
            val_offset,
            values,
        })
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant_id: usize,
    /// The quantisation table latched when the component's first scan starts.
    quant: Option<[u16; 64]>,
    /// Blocks across and down in the coefficient store (padded to whole MCUs).
    blocks_w: usize,
    blocks_h: usize,
    coefs: Vec<[i16; 64]>,
    /// Samples across and down before padding (libjpeg's `downsampled_width`).
    width: usize,
    height: usize,
}

struct Frame {
    width: usize,
    height: usize,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
    components: Vec<Component>,
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Arc<Huffman>>; 4],
    ac: [Option<Arc<Huffman>>; 4],
    restart_interval: usize,
    frame: Option<Frame>,
    scans: usize,
    jfif: bool,
    adobe_transform: Option<u8>,
}

impl<'a> Parser<'a> {
    fn new(data: &'a [u8], tables: &Tables) -> Parser<'a> {
        Parser {
            data,
            pos: 0,
            quant: tables.quant,
            dc: tables.dc.clone(),
            ac: tables.ac.clone(),
            restart_interval: 0,
            frame: None,
            scans: 0,
            jfif: false,
            adobe_transform: None,
        }
    }

    fn run(&mut self, max_pixels: u64) -> Result<()> {
        if self.data.len() < 2 || self.data[..2] != [0xFF, 0xD8] {
            return bad("does not start with a JPEG SOI marker");
        }
        self.pos = 2;
        loop {
            let marker = self.next_marker()?;
            match marker {
                0xD9 => return Ok(()),
                0xD8 | 0x01 | 0xD0..=0xD7 => {}
                0xC0 | 0xC1 => {
                    let seg = self.segment()?;
                    self.read_frame(seg, max_pixels)?;
                }
                0xC2 => return Err(JpegFault::Unsupported("progressive JPEG".into())),
                0xC3 | 0xC5..=0xC7 | 0xCB | 0xCD..=0xCF => {
                    return Err(JpegFault::Unsupported(format!(
                        "JPEG frame type 0x{marker:02X}"
                    )))
                }
                0xC9 | 0xCA => return Err(JpegFault::Unsupported("arithmetic-coded JPEG".into())),
                0xC4 => {
                    let seg = self.segment()?;
                    self.read_huffman(seg)?;
                }
                0xDB => {
                    let seg = self.segment()?;
                    self.read_quant(seg)?;
                }
                0xDD => {
                    let seg = self.segment()?;
                    if seg.len() < 2 {
                        return bad("short DRI segment");
                    }
                    self.restart_interval = u16::from_be_bytes([seg[0], seg[1]]) as usize;
                }
                0xDA => {
                    let seg = self.segment()?;
                    self.read_scan(seg)?;
                    self.scans += 1;
                }
                0xDC => return Err(JpegFault::Unsupported("DNL marker".into())),
                0xE0 => {
                    let seg = self.segment()?;
                    if seg.starts_with(b"JFIF\0") {
                        self.jfif = true;
                    }
                }
                0xEE => {
                    let seg = self.segment()?;
                    if seg.len() >= 12 && seg.starts_with(b"Adobe") {
                        self.adobe_transform = Some(seg[11]);
                    }
                }
                _ => {
                    self.segment()?;
                }
            }
        }
    }

    /// Skips to the next marker (past any fill bytes or stray data) and returns its code.
    fn next_marker(&mut self) -> Result<u8> {
        loop {
            while self.pos < self.data.len() && self.data[self.pos] != 0xFF {
                self.pos += 1;
            }
            while self.pos < self.data.len() && self.data[self.pos] == 0xFF {
                self.pos += 1;
            }
            match self.data.get(self.pos) {
                None => return bad("stream ends before the EOI marker"),
                Some(0) => self.pos += 1,
                Some(&m) => {
                    self.pos += 1;
                    return Ok(m);
                }
            }
        }
    }

    /// The payload of a length-prefixed segment; the cursor moves past it.
    fn segment(&mut self) -> Result<&'a [u8]> {
        let data = self.data;
        let Some(len) = data.get(self.pos..self.pos + 2) else {
            return bad("segment length cut off");
        };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        if len < 2 || self.pos + len > data.len() {
            return bad(format!("segment length {len} runs past the stream"));
        }
        let seg = &data[self.pos + 2..self.pos + len];
        self.pos += len;
        Ok(seg)
    }

    fn read_quant(&mut self, mut seg: &[u8]) -> Result<()> {
        while !seg.is_empty() {
            let (precision, id) = ((seg[0] >> 4) as usize, (seg[0] & 15) as usize);
            let size = if precision == 0 { 64 } else { 128 };
            if id > 3 || precision > 1 || seg.len() < 1 + size {
                return bad("malformed DQT segment");
            }
            let mut table = [0u16; 64];
            for (k, &pos) in NATURAL_ORDER[..64].iter().enumerate() {
                table[pos] = if precision == 0 {
                    seg[1 + k] as u16
                } else {
                    u16::from_be_bytes([seg[1 + 2 * k], seg[2 + 2 * k]])
                };
            }
            self.quant[id] = Some(table);
            seg = &seg[1 + size..];
        }
        Ok(())
    }

    fn read_huffman(&mut self, mut seg: &[u8]) -> Result<()> {
        while !seg.is_empty() {
            if seg.len() < 17 {
                return bad("malformed DHT segment");
            }
            let (class, id) = (seg[0] >> 4, (seg[0] & 15) as usize);
            let mut counts = [0u8; 16];
            counts.copy_from_slice(&seg[1..17]);
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            if class > 1 || id > 3 || total > 256 || seg.len() < 17 + total {
                return bad("malformed DHT segment");
            }
            let table = Arc::new(Huffman::new(&counts, seg[17..17 + total].to_vec())?);
            if class == 0 {
                self.dc[id] = Some(table);
            } else {
                self.ac[id] = Some(table);
            }
            seg = &seg[17 + total..];
        }
        Ok(())
    }

    fn read_frame(&mut self, seg: &[u8], max_pixels: u64) -> Result<()> {
        if self.frame.is_some() {
            return bad("more than one frame header");
        }
        if seg.len() < 6 {
            return bad("short frame header");
        }
        if seg[0] != 8 {
            return Err(JpegFault::Unsupported(format!("{}-bit JPEG", seg[0])));
        }
        let height = u16::from_be_bytes([seg[1], seg[2]]) as usize;
        let width = u16::from_be_bytes([seg[3], seg[4]]) as usize;
        let count = seg[5] as usize;
        if height == 0 {
            return Err(JpegFault::Unsupported(
                "height given by a DNL marker".into(),
            ));
        }
        if width == 0 {
            return bad("frame width 0");
        }
        if (width * height) as u64 > max_pixels {
            return Err(JpegFault::TooLarge((width * height) as u64));
        }
        if count != 1 && count != 3 {
            return Err(JpegFault::Unsupported(format!("{count}-component JPEG")));
        }
        if seg.len() < 6 + 3 * count {
            return bad("short frame header");
        }
        let mut components = Vec::with_capacity(count);
        for c in 0..count {
            let s = &seg[6 + 3 * c..9 + 3 * c];
            let (h, v) = ((s[1] >> 4) as usize, (s[1] & 15) as usize);
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || s[2] > 3 {
                return bad("bad component sampling factors or table id");
            }
            components.push(Component {
                id: s[0],
                h,
                v,
                quant_id: s[2] as usize,
                quant: None,
                blocks_w: 0,
                blocks_h: 0,
                coefs: Vec::new(),
                width: 0,
                height: 0,
            });
        }
        if count == 1 {
            // A lone component is never subsampled, whatever its factors say.
            components[0].h = 1;
            components[0].v = 1;
        }
        let max_h = components.iter().map(|c| c.h).max().unwrap_or(1);
        let max_v = components.iter().map(|c| c.v).max().unwrap_or(1);
        for c in &components {
            let ratio = (max_h / c.h, max_v / c.v);
            if max_h % c.h != 0 || max_v % c.v != 0 || ratio.0 > 2 || ratio.1 > 2 {
                return Err(JpegFault::Unsupported(format!(
                    "chroma sampling {}x{} under {max_h}x{max_v}",
                    c.h, c.v
                )));
            }
        }
        let mcus_x = width.div_ceil(8 * max_h);
        let mcus_y = height.div_ceil(8 * max_v);
        for c in &mut components {
            c.blocks_w = mcus_x * c.h;
            c.blocks_h = mcus_y * c.v;
            c.coefs = vec![[0i16; 64]; c.blocks_w * c.blocks_h];
            c.width = (width * c.h).div_ceil(max_h);
            c.height = (height * c.v).div_ceil(max_v);
        }
        self.frame = Some(Frame {
            width,
            height,
            max_h,
            max_v,
            mcus_x,
            mcus_y,
            components,
        });
        Ok(())
    }

    fn read_scan(&mut self, seg: &[u8]) -> Result<()> {
        let Some(frame) = self.frame.as_mut() else {
            return bad("scan before the frame header");
        };
        let count = *seg.first().unwrap_or(&0) as usize;
        if count == 0 || count > frame.components.len() || seg.len() < 4 + 2 * count {
            return bad("malformed scan header");
        }
        let mut members = Vec::with_capacity(count);
        for i in 0..count {
            let (id, tables) = (seg[1 + 2 * i], seg[2 + 2 * i]);
            let Some(index) = frame.components.iter().position(|c| c.id == id) else {
                return bad(format!("scan names component {id}, not in the frame"));
            };
            let (dc, ac) = ((tables >> 4) as usize, (tables & 15) as usize);
            let (Some(Some(dc)), Some(Some(ac))) = (self.dc.get(dc), self.ac.get(ac)) else {
                return bad("scan uses a Huffman table that was never defined");
            };
            let component = &mut frame.components[index];
            if component.quant.is_none() {
                match self.quant[component.quant_id] {
                    Some(q) => component.quant = Some(q),
                    None => return bad("component uses a quantisation table never defined"),
                }
            }
            members.push((index, dc, ac));
        }
        let tail = &seg[1 + 2 * count..];
        if tail[0] != 0 || tail[1] != 63 {
            return bad("spectral selection in a sequential scan");
        }
        let mut bits = BitReader::new(self.data, self.pos);
        let mut pred = vec![0i32; count];
        let single = count == 1;
        let (units_x, units_y) = if single {
            let c = &frame.components[members[0].0];
            (c.width.div_ceil(8), c.height.div_ceil(8))
        } else {
            (frame.mcus_x, frame.mcus_y)
        };
        let total = units_x * units_y;
        for unit in 0..total {
            if self.restart_interval > 0 && unit > 0 && unit % self.restart_interval == 0 {
                bits.restart()?;
                pred.fill(0);
            }
            let (ux, uy) = (unit % units_x, unit / units_x);
            for (m, (index, dc, ac)) in members.iter().enumerate() {
                let c = &mut frame.components[*index];
                let (bw, bh) = if single { (1, 1) } else { (c.h, c.v) };
                for by in 0..bh {
                    for bx in 0..bw {
                        let at = (uy * bh + by) * c.blocks_w + ux * bw + bx;
                        let block = &mut c.coefs[at];
                        decode_block(&mut bits, dc, ac, &mut pred[m], block)?;
                    }
                }
            }
            if bits.overran() {
                return bad("entropy-coded data ends before the last block");
            }
        }
        self.pos = bits.end_of_scan();
        Ok(())
    }

    /// libjpeg's rule for a three-component stream the container does not describe.
    fn stream_colour(&self, frame: &Frame) -> Output {
        if self.jfif {
            return Output::YCbCr;
        }
        if let Some(t) = self.adobe_transform {
            return if t == 0 { Output::Rgb } else { Output::YCbCr };
        }
        let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
        if ids == [b'R', b'G', b'B'] {
            Output::Rgb
        } else {
            Output::YCbCr
        }
    }
}

fn decode_block(
    bits: &mut BitReader,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    block: &mut [i16; 64],
) -> Result<()> {
    let t = bits.decode(dc)?;
    let diff = if t == 0 { 0 } else { bits.receive_extend(t)? };
    *pred = pred.wrapping_add(diff);
    block[0] = *pred as i16;
    let mut k = 1;
    while k < 64 {
        let rs = bits.decode(ac)?;
        let (r, s) = ((rs >> 4) as usize, rs & 15);
        if s != 0 {
            k += r;
            block[NATURAL_ORDER[k]] = bits.receive_extend(s)? as i16;
        } else if r == 15 {
            k += 15;
        } else {
            break;
        }
        k += 1;
    }
    Ok(())
}

/// Reads entropy-coded bits, unstuffing 0xFF00 and stopping at markers. Past a marker
/// it feeds zero bits (as libjpeg does) and remembers, so a stream cut short is an error.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    buffer: u64,
    count: u32,
    /// Zero bits fed in after a marker or the end of data, at the tail of `buffer`.
    padding: u32,
    marker_at: Option<usize>,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> BitReader<'a> {
        BitReader {
            data,
            pos,
            buffer: 0,
            count: 0,
            padding: 0,
            marker_at: None,
        }
    }

    fn fill(&mut self) {
        while self.count <= 56 {
            let mut byte = 0u8;
            if self.marker_at.is_none() {
                match self.data.get(self.pos) {
                    Some(&0xFF) => match self.data.get(self.pos + 1) {
                        Some(0) => {
                            byte = 0xFF;
                            self.pos += 2;
                        }
                        Some(0xFF) => {
                            // A fill byte before a marker.
                            self.pos += 1;
                            continue;
                        }
                        _ => self.marker_at = Some(self.pos),
                    },
                    Some(&b) => {
                        byte = b;
                        self.pos += 1;
                    }
                    None => self.marker_at = Some(self.data.len()),
                }
            }
            if self.marker_at.is_some() {
                self.padding += 8;
            }
            self.buffer |= (byte as u64) << (56 - self.count);
            self.count += 8;
        }
    }

    fn overran(&self) -> bool {
        self.count < self.padding
    }

    fn peek(&mut self, n: u32) -> u32 {
        if self.count < n {
            self.fill();
        }
        (self.buffer >> (64 - n)) as u32
    }

    fn consume(&mut self, n: u32) {
        self.buffer <<= n;
        self.count -= n;
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8> {
        let look = self.peek(16);
        let (len, value) = table.fast[(look >> (16 - FAST_BITS)) as usize];
        if len > 0 {
            self.consume(len as u32);
            return Ok(value);
        }
        for len in FAST_BITS as usize + 1..=16 {
            let code = (look >> (16 - len)) as i32;
            if code <= table.max_code[len] {
                self.consume(len as u32);
                let index = (code + table.val_offset[len]) as usize;
                return match table.values.get(index) {
                    Some(&v) => Ok(v),
                    None => bad("bad Huffman code"),
                };
            }
        }
        bad("bad Huffman code")
    }

    /// Reads `s` bits and sign-extends them as JPEG magnitude categories do.
    fn receive_extend(&mut self, s: u8) -> Result<i32> {
        let s = s as u32;
        if s > 16 {
            return bad("magnitude category above 16");
        }
        let x = self.peek(s) as i32;
        self.consume(s);
        Ok(if x < (1 << (s - 1)) {
            x + ((-1) << s) + 1
        } else {
            x
        })
    }

    /// Byte-aligns and steps over the RSTn marker that must come next.
    fn restart(&mut self) -> Result<()> {
        if self.overran() {
            return bad("entropy-coded data ends inside a restart interval");
        }
        self.buffer = 0;
        self.count = 0;
        self.padding = 0;
        let at = match self.marker_at.take() {
            Some(at) => at,
            None => find_marker(self.data, self.pos),
        };
        match self.data.get(at + 1) {
            Some(0xD0..=0xD7) => {
                self.pos = at + 2;
                Ok(())
            }
            _ => bad("missing restart marker"),
        }
    }

    /// Where the marker after the scan starts.
    fn end_of_scan(&self) -> usize {
        match self.marker_at {
            Some(at) => at,
            None => find_marker(self.data, self.pos),
        }
    }
}

fn find_marker(data: &[u8], mut pos: usize) -> usize {
    while pos + 1 < data.len()
        && !(data[pos] == 0xFF && data[pos + 1] != 0 && data[pos + 1] != 0xFF)
    {
        pos += 1;
    }
    pos.min(data.len())
}

impl Frame {
    fn finish(self, output: Output) -> Decoded {
        let planes: Vec<Vec<u8>> = self.components.iter().map(idct_plane).collect();
        let (w, h) = (self.width, self.height);
        if output == Output::Grey {
            let c = &self.components[0];
            let stride = c.blocks_w * 8;
            let mut pixels = Vec::with_capacity(w * h);
            for y in 0..h {
                pixels.extend_from_slice(&planes[0][y * stride..y * stride + w]);
            }
            return Decoded {
                width: w,
                height: h,
                channels: 1,
                pixels,
            };
        }
        let full: Vec<Vec<u8>> = self
            .components
            .iter()
            .zip(&planes)
            .map(|(c, plane)| upsample(c, plane, self.max_h / c.h, self.max_v / c.v, w, h))
            .collect();
        let mut pixels = vec![0u8; w * h * 3];
        if output == Output::YCbCr {
            ycc_to_rgb(&full[0], &full[1], &full[2], &mut pixels);
        } else {
            for (((px, &a), &b), &c) in pixels
                .chunks_exact_mut(3)
                .zip(&full[0])
                .zip(&full[1])
                .zip(&full[2])
            {
                px.copy_from_slice(&[a, b, c]);
            }
        }
        Decoded {
            width: w,
            height: h,
            channels: 3,
            pixels,
        }
    }
}

// Accurate integer IDCT, libjpeg's jidctint.c: 13 fraction bits in the constants,
// 2 extra bits kept between the column and row passes.
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// The eight outputs of one 1-D pass before descaling, libjpeg's even/odd split.
fn idct_1d(i: [i64; 8]) -> [i64; 8] {
    let (z2, z3) = (i[2], i[6]);
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 - z3 * FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    let tmp0 = (i[0] + i[4]) << CONST_BITS;
    let tmp1 = (i[0] - i[4]) << CONST_BITS;
    let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
    let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);

    let (mut t0, mut t1, mut t2, mut t3) = (i[7], i[5], i[3], i[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    t0 *= FIX_0_298631336;
    t1 *= FIX_2_053119869;
    t2 *= FIX_3_072711026;
    t3 *= FIX_1_501321110;
    let z1 = -z1 * FIX_0_899976223;
    let z2 = -z2 * FIX_2_562915447;
    let z3 = -z3 * FIX_1_961570560 + z5;
    let z4 = -z4 * FIX_0_390180644 + z5;
    t0 += z1 + z3;
    t1 += z2 + z4;
    t2 += z2 + z3;
    t3 += z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

/// libjpeg's post-IDCT range limit: the low 10 bits as a signed value, plus 128, clamped.
fn range_limit(x: i64) -> u8 {
    let wrapped = ((x & 1023) ^ 512) - 512;
    (wrapped + 128).clamp(0, 255) as u8
}

/// One 8x8 block: dequantise, columns then rows, into `out` with row stride `stride`.
fn idct_block(coef: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [0i32; 64];
    for col in 0..8 {
        // libjpeg multiplies as 16-bit `short`s promoted to int.
        let dq = |row: usize| {
            (coef[row * 8 + col] as i32).wrapping_mul(quant[row * 8 + col] as i16 as i32) as i64
        };
        if (1..8).all(|row| coef[row * 8 + col] == 0) {
            let dc = (dq(0) << PASS1_BITS) as i32;
            for row in 0..8 {
                ws[row * 8 + col] = dc;
            }
            continue;
        }
        let o = idct_1d([dq(0), dq(1), dq(2), dq(3), dq(4), dq(5), dq(6), dq(7)]);
        for row in 0..8 {
            ws[row * 8 + col] = descale(o[row], CONST_BITS - PASS1_BITS) as i32;
        }
    }
    for row in 0..8 {
        let w = &ws[row * 8..row * 8 + 8];
        let line = &mut out[row * stride..row * stride + 8];
        let o = idct_1d(std::array::from_fn(|k| w[k] as i64));
        for (px, v) in line.iter_mut().zip(o) {
            *px = range_limit(descale(v, CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// A component's samples, `blocks_w * 8` wide, `blocks_h * 8` high. On x86-64
/// CPUs with AVX2 the same code is compiled a second time with AVX2 enabled, so
/// the eight-lane IDCT (`idct_block_lanes`) runs eight 32-bit lanes to a register.
fn idct_plane(c: &Component) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { idct_plane_avx2(c) };
    }
    idct_plane_with_lanes(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn idct_plane_avx2(c: &Component) -> Vec<u8> {
    idct_plane_with_lanes(c)
}

#[inline(always)]
fn idct_plane_with_lanes(c: &Component) -> Vec<u8> {
    let stride = c.blocks_w * 8;
    let mut plane = vec![0u8; stride * c.blocks_h * 8];
    let quant = c.quant.unwrap_or([0; 64]);
    for by in 0..c.blocks_h {
        for bx in 0..c.blocks_w {
            let at = by * 8 * stride + bx * 8;
            let coef = &c.coefs[by * c.blocks_w + bx];
            if !idct_block_lanes(coef, &quant, &mut plane[at..], stride) {
                idct_block(coef, &quant, &mut plane[at..], stride);
            }
        }
    }
    plane
}

/// Eight 32-bit lanes: one value of each of eight columns (or rows) of a block.
type Lanes = [i32; 8];

/// Eight lanes from `f(0..8)`. A plain loop, not `std::array::from_fn`: that one
/// stayed out of line in the AVX2 copies (a call and a stack round trip for every
/// eight values: `try_from_fn` was 13.6% of `cargo bench --bench read_slide` in
/// perf).
#[inline(always)]
fn lanes(mut f: impl FnMut(usize) -> i32) -> Lanes {
    let mut out = [0; 8];
    for (k, v) in out.iter_mut().enumerate() {
        *v = f(k);
    }
    out
}

/// Eight rows of lanes from `f(0..8)`, as `lanes` builds one.
#[inline(always)]
fn lane_rows(mut f: impl FnMut(usize) -> Lanes) -> [Lanes; 8] {
    let mut out = [[0; 8]; 8];
    for (k, v) in out.iter_mut().enumerate() {
        *v = f(k);
    }
    out
}

/// Largest input either pass of the 32-bit IDCT takes exactly. The largest
/// intermediate of `idct_1d` is at most 61,214 times its largest input (the
/// largest sum of absolute coefficients over its linear forms), and 32,767 x
/// 61,214 plus descale's rounding term stays below 2^31, so with inputs within
/// +-32,767 no 32-bit intermediate overflows and the result is the 64-bit one.
const LANES_MAX_INPUT: i32 = 32_767;

/// `idct_1d` on eight columns (or rows) at once, lane by lane, in 32 bits.
#[inline(always)]
fn idct_1d_lanes(i: &[Lanes; 8]) -> [Lanes; 8] {
    const C: fn(i64) -> i32 = |c| c as i32;
    let [i0, i1, i2, i3, i4, i5, i6, i7] = i;
    let z1 = lanes(|k| (i2[k] + i6[k]) * C(FIX_0_541196100));
    let tmp2 = lanes(|k| z1[k] - i6[k] * C(FIX_1_847759065));
    let tmp3 = lanes(|k| z1[k] + i2[k] * C(FIX_0_765366865));
    let tmp0 = lanes(|k| (i0[k] + i4[k]) << CONST_BITS);
    let tmp1 = lanes(|k| (i0[k] - i4[k]) << CONST_BITS);
    let tmp10 = lanes(|k| tmp0[k] + tmp3[k]);
    let tmp13 = lanes(|k| tmp0[k] - tmp3[k]);
    let tmp11 = lanes(|k| tmp1[k] + tmp2[k]);
    let tmp12 = lanes(|k| tmp1[k] - tmp2[k]);

    let (t0, t1, t2, t3) = (i7, i5, i3, i1);
    let z5 = lanes(|k| (t0[k] + t2[k] + t1[k] + t3[k]) * C(FIX_1_175875602));
    let z1 = lanes(|k| -(t0[k] + t3[k]) * C(FIX_0_899976223));
    let z2 = lanes(|k| -(t1[k] + t2[k]) * C(FIX_2_562915447));
    let z3 = lanes(|k| -(t0[k] + t2[k]) * C(FIX_1_961570560) + z5[k]);
    let z4 = lanes(|k| -(t1[k] + t3[k]) * C(FIX_0_390180644) + z5[k]);
    let t0 = lanes(|k| t0[k] * C(FIX_0_298631336) + (z1[k] + z3[k]));
    let t1 = lanes(|k| t1[k] * C(FIX_2_053119869) + (z2[k] + z4[k]));
    let t2 = lanes(|k| t2[k] * C(FIX_3_072711026) + (z2[k] + z3[k]));
    let t3 = lanes(|k| t3[k] * C(FIX_1_501321110) + (z1[k] + z4[k]));
    [
        lanes(|k| tmp10[k] + t3[k]),
        lanes(|k| tmp11[k] + t2[k]),
        lanes(|k| tmp12[k] + t1[k]),
        lanes(|k| tmp13[k] + t0[k]),
        lanes(|k| tmp13[k] - t0[k]),
        lanes(|k| tmp12[k] - t1[k]),
        lanes(|k| tmp11[k] - t2[k]),
        lanes(|k| tmp10[k] - t3[k]),
    ]
}

/// `idct_block` with 32-bit lanes, all eight columns and then all eight rows at
/// once, so the compiler vectorises it. The same arithmetic as the 64-bit path
/// (a column whose AC coefficients are all zero gives `dc << PASS1_BITS` either
/// way), exact while every input to a pass is within `LANES_MAX_INPUT`; returns
/// false without writing anything when one is not (never in a valid 8-bit
/// stream), and the caller runs `idct_block`.
#[inline(always)]
fn idct_block_lanes(coef: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) -> bool {
    // libjpeg multiplies as 16-bit `short`s promoted to int: at most 2^30.
    let rows: [Lanes; 8] = lane_rows(|r| {
        lanes(|c| (coef[r * 8 + c] as i32).wrapping_mul(quant[r * 8 + c] as i16 as i32))
    });
    let widest = |block: &[Lanes; 8]| block.iter().flatten().map(|v| v.unsigned_abs()).max();
    if widest(&rows).unwrap_or(0) > LANES_MAX_INPUT as u32 {
        return false;
    }
    // Columns: lane c is column c; output r is row r of the work block.
    let pass1 = idct_1d_lanes(&rows);
    let half1 = 1 << (CONST_BITS - PASS1_BITS - 1);
    let ws: [Lanes; 8] =
        lane_rows(|r| lanes(|c| (pass1[r][c] + half1) >> (CONST_BITS - PASS1_BITS)));
    if widest(&ws).unwrap_or(0) > LANES_MAX_INPUT as u32 {
        return false;
    }
    // Rows: transpose so lane r is row r and input k is column k.
    let cols: [Lanes; 8] = lane_rows(|k| lanes(|r| ws[r][k]));
    let pass2 = idct_1d_lanes(&cols);
    let shift = CONST_BITS + PASS1_BITS + 3;
    let half2 = 1 << (shift - 1);
    // `range_limit` lane by lane (the same bit operations in 32 bits), then the
    // 8x8 transpose back to rows as bytes.
    let limited: [Lanes; 8] = lane_rows(|k| {
        lanes(|r| {
            let v = (pass2[k][r] + half2) >> shift;
            ((((v & 1023) ^ 512) - 512) + 128).clamp(0, 255)
        })
    });
    for r in 0..8 {
        let line = &mut out[r * stride..r * stride + 8];
        for (k, px) in line.iter_mut().enumerate() {
            *px = limited[k][r] as u8;
        }
    }
    true
}

/// A component brought to `w x h`: libjpeg-turbo's fancy (triangle) upsampling for 2x
/// horizontal, 2x vertical or both, box replication for 2x horizontal on planes two
/// samples wide or less. Edges repeat the last real sample, not the block padding.
fn upsample(c: &Component, plane: &[u8], fx: usize, fy: usize, w: usize, h: usize) -> Vec<u8> {
    let stride = c.blocks_w * 8;
    let (cw, ch) = (c.width, c.height);
    let row = |y: usize| &plane[y * stride..y * stride + cw];
    let mut out = vec![0u8; w * h];
    // Per input column: the sample, or 3 x nearer row + farther row when upsampled
    // vertically.
    let mut sums = vec![0i32; cw];
    for (y, line) in out.chunks_exact_mut(w).enumerate() {
        if fx == 2 && cw <= 2 {
            let src = row(if fy == 2 { y / 2 } else { y });
            for (x, px) in line.iter_mut().enumerate() {
                *px = src[x / 2];
            }
            continue;
        }
        let bias_v = if fy == 2 {
            let i = y / 2;
            let (far, bias) = if y % 2 == 0 {
                (i.saturating_sub(1), 1)
            } else {
                ((i + 1).min(ch - 1), 2)
            };
            for ((s, &n), &f) in sums.iter_mut().zip(row(i)).zip(row(far)) {
                *s = 3 * n as i32 + f as i32;
            }
            bias
        } else {
            for (s, &n) in sums.iter_mut().zip(row(y)) {
                *s = n as i32;
            }
            0
        };
        if fx == 1 {
            for (px, &s) in line.iter_mut().zip(&sums) {
                *px = if fy == 2 { (s + bias_v) >> 2 } else { s } as u8;
            }
            continue;
        }
        // 3/4 of the nearer column and 1/4 of the farther one; libjpeg alternates the
        // rounding bias between the two outputs of each input column.
        let (shift, bias_left, bias_right) = if fy == 2 { (4, 8, 7) } else { (2, 1, 2) };
        widen_row(&sums, line, shift, bias_left, bias_right);
    }
    out
}

/// One row of horizontal fancy upsampling: input column j gives outputs 2j and
/// 2j + 1 (3/4 of it and 1/4 of its left or right neighbour, edges repeated).
/// Interior columns go eight at a time in lanes (compiled again with AVX2 where
/// the CPU has it), the edges and the rest one by one: the same arithmetic.
fn widen_row(sums: &[i32], line: &mut [u8], shift: i32, bias_left: i32, bias_right: i32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { widen_row_avx2(sums, line, shift, bias_left, bias_right) };
    }
    widen_row_with_lanes(sums, line, shift, bias_left, bias_right)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn widen_row_avx2(
    sums: &[i32],
    line: &mut [u8],
    shift: i32,
    bias_left: i32,
    bias_right: i32,
) {
    widen_row_with_lanes(sums, line, shift, bias_left, bias_right)
}

#[inline(always)]
fn widen_row_with_lanes(
    sums: &[i32],
    line: &mut [u8],
    shift: i32,
    bias_left: i32,
    bias_right: i32,
) {
    let cw = sums.len();
    let w = line.len();
    let last = cw - 1;
    let one = |line: &mut [u8], j: usize| {
        let this = 3 * sums[j];
        let left = (this + sums[j.saturating_sub(1)] + bias_left) >> shift;
        let right = (this + sums[(j + 1).min(last)] + bias_right) >> shift;
        if 2 * j < w {
            line[2 * j] = left as u8;
        }
        if 2 * j + 1 < w {
            line[2 * j + 1] = right as u8;
        }
    };
    // Columns 1..last have both neighbours and both outputs inside the row
    // (2j + 1 <= 2 * cw - 3 < w, as w >= 2 * cw - 1).
    let mut j = 1;
    while j + 8 <= last {
        let prev = &sums[j - 1..j + 7];
        let this = &sums[j..j + 8];
        let next = &sums[j + 1..j + 9];
        let left = lanes(|k| (3 * this[k] + prev[k] + bias_left) >> shift);
        let right = lanes(|k| (3 * this[k] + next[k] + bias_right) >> shift);
        for (k, pair) in line[2 * j..2 * j + 16].chunks_exact_mut(2).enumerate() {
            pair[0] = left[k] as u8;
            pair[1] = right[k] as u8;
        }
        j += 8;
    }
    one(line, 0);
    for j in j.max(1)..cw {
        one(line, j);
    }
}

/// YCbCr to interleaved RGB as libjpeg's jdcolor.c does it, eight pixels at a time
/// (compiled a second time with AVX2 where the CPU has it, as the IDCT is).
fn ycc_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], rgb: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { ycc_to_rgb_avx2(y, cb, cr, rgb) };
    }
    ycc_to_rgb_with_lanes(y, cb, cr, rgb)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn ycc_to_rgb_avx2(y: &[u8], cb: &[u8], cr: &[u8], rgb: &mut [u8]) {
    ycc_to_rgb_with_lanes(y, cb, cr, rgb)
}

/// The arithmetic behind `YccTables`, lane by lane in 32 bits (every product fits:
/// at most 116,130 x 128): each entry of a table is this expression at its index,
/// so the pixels are the tables' pixels (tested over every Y, Cb and Cr).
#[inline(always)]
fn ycc_to_rgb_with_lanes(y: &[u8], cb: &[u8], cr: &[u8], rgb: &mut [u8]) {
    const HALF: i32 = 1 << 15;
    let (cr_r, cb_b, cr_g, cb_g) = ycc_constants();
    let eight = y.len() / 8 * 8;
    for (((ys, cbs), crs), out) in y[..eight]
        .chunks_exact(8)
        .zip(cb.chunks_exact(8))
        .zip(cr.chunks_exact(8))
        .zip(rgb.chunks_exact_mut(24))
    {
        let yv = lanes(|k| ys[k] as i32);
        let xb = lanes(|k| cbs[k] as i32 - 128);
        let xr = lanes(|k| crs[k] as i32 - 128);
        let r = lanes(|k| (yv[k] + ((cr_r * xr[k] + HALF) >> 16)).clamp(0, 255));
        let g = lanes(|k| (yv[k] + ((-cb_g * xb[k] + HALF - cr_g * xr[k]) >> 16)).clamp(0, 255));
        let b = lanes(|k| (yv[k] + ((cb_b * xb[k] + HALF) >> 16)).clamp(0, 255));
        for (k, px) in out.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[r[k] as u8, g[k] as u8, b[k] as u8]);
        }
    }
    for (i, px) in rgb.chunks_exact_mut(3).enumerate().skip(eight) {
        let (yv, xb, xr) = (y[i] as i32, cb[i] as i32 - 128, cr[i] as i32 - 128);
        let r = (yv + ((cr_r * xr + HALF) >> 16)).clamp(0, 255);
        let g = (yv + ((-cb_g * xb + HALF - cr_g * xr) >> 16)).clamp(0, 255);
        let b = (yv + ((cb_b * xb + HALF) >> 16)).clamp(0, 255);
        px.copy_from_slice(&[r as u8, g as u8, b as u8]);
    }
}

/// The four YCbCr constants in 16 fraction bits, rounded as libjpeg's FIX rounds:
/// Cr to R, Cb to B, Cr to G, Cb to G (the last two subtracted).
fn ycc_constants() -> (i32, i32, i32, i32) {
    let fix = |x: f64| (x * 65536.0 + 0.5) as i32;
    (fix(1.40200), fix(1.77200), fix(0.71414), fix(0.34414))
}

/// libjpeg's jdcolor.c tables: 16 fraction bits, rounded as it rounds them. The
/// decoder computes the same entries on the fly (`ycc_to_rgb_with_lanes`); the
/// tables stay as the reference the tests hold it to.
#[cfg(test)]
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

#[cfg(test)]
impl YccTables {
    fn new() -> YccTables {
        const SCALE: u32 = 16;
        const HALF: i64 = 1 << (SCALE - 1);
        let (cr_r, cb_b, cr_g, cb_g) = ycc_constants();
        let mut t = YccTables {
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        for i in 0..256usize {
            let x = i as i64 - 128;
            t.cr_r[i] = ((cr_r as i64 * x + HALF) >> SCALE) as i32;
            t.cb_b[i] = ((cb_b as i64 * x + HALF) >> SCALE) as i32;
            t.cr_g[i] = (-(cr_g as i64) * x) as i32;
            t.cb_g[i] = (-(cb_g as i64) * x + HALF) as i32;
        }
        t
    }

    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let y = y as i32;
        let (cb, cr) = (cb as usize, cr as usize);
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        [
            clamp(y + self.cr_r[cr]),
            clamp(y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16)),
            clamp(y + self.cb_b[cb]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> (Vec<u8>, image::RgbImage) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/jpeg");
        let stream = std::fs::read(dir.join(format!("{name}.jpg"))).unwrap();
        let reference = image::open(dir.join(format!("{name}.libjpeg-turbo.png")))
            .unwrap()
            .to_rgb8();
        (stream, reference)
    }

    fn as_rgb(d: &Decoded) -> Vec<u8> {
        if d.channels == 3 {
            return d.pixels.clone();
        }
        d.pixels.iter().flat_map(|&g| [g, g, g]).collect()
    }

    /// The lane path of horizontal fancy upsampling writes what one-column-at-a-time
    /// arithmetic writes, for every row width around the lane groups, odd and even
    /// output widths, both rounding modes and sums over their whole range.
    #[test]
    fn lane_upsampling_matches_column_by_column() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |bound: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as i32
        };
        for cw in 3..60usize {
            for w in [2 * cw - 1, 2 * cw] {
                for (shift, bias_left, bias_right, top) in [(4, 8, 7, 1021), (2, 1, 2, 256)] {
                    let sums: Vec<i32> = (0..cw).map(|_| next(top)).collect();
                    let mut want = vec![0u8; w];
                    for j in 0..cw {
                        let this = 3 * sums[j];
                        let left = (this + sums[j.saturating_sub(1)] + bias_left) >> shift;
                        let right = (this + sums[(j + 1).min(cw - 1)] + bias_right) >> shift;
                        want[2 * j] = left as u8;
                        if 2 * j + 1 < w {
                            want[2 * j + 1] = right as u8;
                        }
                    }
                    let mut got = vec![0u8; w];
                    widen_row(&sums, &mut got, shift, bias_left, bias_right);
                    assert_eq!(got, want, "cw {cw} w {w} shift {shift}");
                }
            }
        }
    }

    #[test]
    fn baseline_layouts_match_libjpeg_turbo_exactly() {
        for name in [
            "ycbcr-420-q90-77x53",
            "ycbcr-422-q80-77x53",
            "ycbcr-444-q95-77x53",
            "ycbcr-440-q90-77x53",
            "ycbcr-420-q75-3x5",
            "ycbcr-420-q85-restart-optimized-301x67",
            "ycbcr-422-q70-restart-rows-301x67",
            "rgb-adobe-q90-77x53",
            "grey-q90-77x53",
        ] {
            let (stream, reference) = fixture(name);
            let decoded = decode(&stream, JpegColour::FromStream, u64::MAX)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(
                (decoded.width as u32, decoded.height as u32),
                reference.dimensions(),
                "{name}"
            );
            let ours = as_rgb(&decoded);
            let differing = ours
                .iter()
                .zip(reference.as_raw())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                differing, 0,
                "{name}: {differing} samples differ from libjpeg-turbo"
            );
        }
    }

    #[test]
    fn restart_fixtures_really_carry_restart_markers() {
        for name in [
            "ycbcr-420-q85-restart-optimized-301x67",
            "ycbcr-422-q70-restart-rows-301x67",
        ] {
            let (stream, _) = fixture(name);
            let rst = stream
                .windows(2)
                .filter(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
                .count();
            assert!(rst >= 3, "{name}: {rst} restart markers");
        }
    }

    #[test]
    fn progressive_and_4_1_1_are_left_to_the_other_decoder() {
        for name in ["ycbcr-420-progressive-77x53", "ycbcr-411-q90-77x53"] {
            let (stream, _) = fixture(name);
            match decode(&stream, JpegColour::FromStream, u64::MAX) {
                Err(JpegFault::Unsupported(_)) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// The slide readers still open them, through jpeg-decoder, a few grey levels off.
    #[test]
    fn progressive_and_4_1_1_still_decode_through_the_fallback() {
        let limits = crate::slide::Limits::default();
        for name in ["ycbcr-420-progressive-77x53", "ycbcr-411-q90-77x53"] {
            let (stream, reference) = fixture(name);
            let rgb = super::super::grid::decode_jpeg_chunk(
                &stream,
                JpegColour::FromStream,
                77,
                53,
                &limits,
            )
            .unwrap_or_else(|_| panic!("{name} did not decode"));
            let diffs: Vec<i32> = rgb
                .iter()
                .zip(reference.as_raw())
                .map(|(&a, &b)| (a as i32 - b as i32).abs())
                .collect();
            let max = diffs.iter().max().copied().unwrap_or(0);
            let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
            assert!(max <= 4 && mean < 0.5, "{name}: max {max}, mean {mean:.3}");
        }
    }

    /// A full stream as a TIFF writer splits it: a tables-only stream (SOI,
    /// every DQT and DHT, EOI) and the abbreviated rest (SOI, the other segments
    /// and the scan data).
    fn split_tables(stream: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut tables, mut rest) = (vec![0xFF, 0xD8], vec![0xFF, 0xD8]);
        let mut pos = 2;
        while pos + 4 <= stream.len() {
            let marker = stream[pos + 1];
            let len = u16::from_be_bytes([stream[pos + 2], stream[pos + 3]]) as usize;
            let seg = &stream[pos..pos + 2 + len];
            if marker == 0xDA {
                rest.extend_from_slice(&stream[pos..]);
                break;
            }
            if marker == 0xDB || marker == 0xC4 {
                tables.extend_from_slice(seg);
            } else {
                rest.extend_from_slice(seg);
            }
            pos += 2 + len;
        }
        tables.extend_from_slice(&[0xFF, 0xD9]);
        (tables, rest)
    }

    #[test]
    fn tables_parsed_once_decode_every_abbreviated_stream_as_the_whole_stream() {
        for name in ["ycbcr-420-q90-77x53", "ycbcr-422-q70-restart-rows-301x67"] {
            let (stream, _) = fixture(name);
            let whole = decode(&stream, JpegColour::FromStream, 1 << 20).unwrap();
            let (tables, rest) = split_tables(&stream);
            assert!(rest.len() < stream.len() && tables.len() > 100, "{name}");
            // The abbreviated stream alone lacks its tables.
            assert!(
                decode(&rest, JpegColour::FromStream, 1 << 20).is_err(),
                "{name}"
            );
            let shared = Tables::parse(&tables).unwrap();
            for _ in 0..2 {
                let d = decode_with(&rest, &shared, JpegColour::FromStream, 1 << 20).unwrap();
                assert_eq!((d.width, d.height), (whole.width, whole.height), "{name}");
                assert_eq!(d.pixels, whole.pixels, "{name}");
            }
            // A stream that carries its own tables uses them over the shared ones.
            let other = Tables::parse(&split_tables(&fixture("ycbcr-444-q95-77x53").0).0).unwrap();
            let d = decode_with(&stream, &other, JpegColour::FromStream, 1 << 20).unwrap();
            assert_eq!(d.pixels, whole.pixels, "{name}");
        }
        // Image data where only tables belong is refused.
        let (stream, _) = fixture("ycbcr-420-q90-77x53");
        assert!(Tables::parse(&stream).is_err());
    }

    #[test]
    fn frame_larger_than_the_limit_is_refused_before_decoding() {
        let (stream, _) = fixture("ycbcr-420-q90-77x53");
        assert_eq!(
            decode(&stream, JpegColour::FromStream, 77 * 53 - 1).unwrap_err(),
            JpegFault::TooLarge(77 * 53)
        );
    }

    #[test]
    fn truncated_scan_is_an_error_not_grey_pixels() {
        let (stream, _) = fixture("ycbcr-420-q90-77x53");
        let cut = &stream[..stream.len() * 2 / 3];
        assert!(matches!(
            decode(cut, JpegColour::FromStream, u64::MAX),
            Err(JpegFault::Bad(_))
        ));
    }

    /// Bit flips, byte overwrites and truncations anywhere: an error or pixels, never a
    /// panic or a hang (a corrupt stream may still decode, as with libjpeg).
    #[test]
    fn mutated_streams_never_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for name in [
            "ycbcr-420-q90-77x53",
            "ycbcr-422-q70-restart-rows-301x67",
            "grey-q90-77x53",
            "ycbcr-440-q90-77x53",
        ] {
            let (stream, _) = fixture(name);
            for round in 0..600 {
                let mut s = stream.clone();
                let at = next() as usize % s.len();
                match round % 3 {
                    0 => s[at] ^= 1 << (next() % 8),
                    1 => s[at] = next() as u8,
                    _ => s.truncate(at),
                }
                if let Ok(d) = decode(&s, JpegColour::FromStream, 1 << 20) {
                    assert_eq!(d.pixels.len(), d.width * d.height * d.channels);
                }
            }
        }
    }

    /// Random blocks in three regimes (the span of a valid 8-bit stream, wider, the
    /// whole i16 range with any quantiser): the 32-bit lane IDCT, compiled both
    /// plainly (the block call) and with AVX2 where the CPU has it (the plane call),
    /// writes exactly what the 64-bit path writes, or declines and writes nothing.
    #[test]
    fn the_lane_idct_gives_the_64_bit_result_or_declines() {
        let mut seed = 99u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let (mut ran, mut declined) = (0, 0);
        let mut blocks = Vec::new();
        let mut quants = Vec::new();
        for n in 0..30_000 {
            // Dequantised values within +-1024 (an 8-bit stream's DCT range),
            // +-8192, or anything i16 x u16 gives.
            let (limit, qmax) = match n % 3 {
                0 => (1024, 255),
                1 => (8192, 255),
                _ => (1 << 30, 65535),
            };
            let sparse = next(2) == 0; // most real blocks have few AC coefficients
            let quant: [u16; 64] = std::array::from_fn(|_| 1 + next(qmax) as u16);
            let coef: [i16; 64] = std::array::from_fn(|k| {
                if sparse && k > 0 && next(8) != 0 {
                    return 0;
                }
                let span = (limit / quant[k] as i64).clamp(1, 32768);
                (next(2 * span as u64) as i64 - span).clamp(-32768, 32767) as i16
            });
            let (mut want, mut got) = ([0u8; 64], [0u8; 64]);
            idct_block(&coef, &quant, &mut want, 8);
            if idct_block_lanes(&coef, &quant, &mut got, 8) {
                assert_eq!(got, want, "block {n}");
                ran += 1;
            } else {
                assert_eq!(got, [0u8; 64], "block {n} declined but wrote");
                declined += 1;
            }
            if n % 3 == 0 {
                blocks.push(coef);
                quants.push(quant);
            }
        }
        assert!(
            ran > 10_000 && declined > 1_000,
            "{ran} ran, {declined} declined"
        );
        // The plane path (AVX2 on this CPU if it has it), one quantiser a plane.
        for (chunk, quant) in blocks.chunks(40).zip(&quants) {
            let c = Component {
                id: 1,
                h: 1,
                v: 1,
                quant_id: 0,
                quant: Some(*quant),
                blocks_w: 8,
                blocks_h: 5,
                coefs: chunk.to_vec(),
                width: 64,
                height: 40,
            };
            if c.coefs.len() < 40 {
                continue;
            }
            let plane = idct_plane(&c);
            for (b, coef) in c.coefs.iter().enumerate() {
                let mut want = [0u8; 64];
                idct_block(coef, quant, &mut want, 8);
                let (bx, by) = (b % 8, b / 8);
                for r in 0..8 {
                    let at = (by * 8 + r) * 64 + bx * 8;
                    assert_eq!(
                        plane[at..at + 8],
                        want[r * 8..r * 8 + 8],
                        "block {b} row {r}"
                    );
                }
            }
        }
    }

    /// The colour conversion in lanes gives the tables' pixel for every Y, Cb and Cr.
    #[test]
    fn lane_colour_conversion_matches_the_tables_everywhere() {
        let tables = YccTables::new();
        let cb: Vec<u8> = (0..65536u32).map(|i| (i >> 8) as u8).collect();
        let cr: Vec<u8> = (0..65536u32).map(|i| i as u8).collect();
        let mut rgb = vec![0u8; 65536 * 3];
        for y in 0..=255u8 {
            // 65,533 pixels: the last five go through the table path.
            let n = 65533;
            let ys = vec![y; n];
            ycc_to_rgb(&ys, &cb[..n], &cr[..n], &mut rgb[..n * 3]);
            for i in 0..n {
                assert_eq!(
                    rgb[i * 3..i * 3 + 3],
                    tables.rgb(y, cb[i], cr[i]),
                    "y {y} cb {} cr {}",
                    cb[i],
                    cr[i]
                );
            }
        }
        // And the three last (Cb, Cr) pairs through the lanes, at a shifted start.
        let ys = vec![77u8; 16];
        ycc_to_rgb(&ys, &cb[65520..], &cr[65520..], &mut rgb[..48]);
        for i in 0..16 {
            assert_eq!(
                rgb[i * 3..i * 3 + 3],
                tables.rgb(77, cb[65520 + i], cr[65520 + i])
            );
        }
    }

    /// The IDCT against the DCT's definition in floating point: within one grey level.
    #[test]
    fn idct_agrees_with_the_textbook_transform() {
        let mut seed = 12345u64;
        for _ in 0..200 {
            let mut coef = [0i16; 64];
            for (k, c) in coef.iter_mut().enumerate() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let span = if k == 0 {
                    1024
                } else {
                    64 / (1 + k as i64 / 8)
                };
                *c = ((seed >> 33) as i64 % (2 * span + 1) - span) as i16;
            }
            let quant = [1u16; 64];
            let mut out = [0u8; 64];
            idct_block(&coef, &quant, &mut out, 8);
            for y in 0..8 {
                for x in 0..8 {
                    let mut sum = 0.0;
                    for v in 0..8 {
                        for u in 0..8 {
                            let cu = if u == 0 { 0.5f64.sqrt() } else { 1.0 };
                            let cv = if v == 0 { 0.5f64.sqrt() } else { 1.0 };
                            sum += cu
                                * cv
                                * coef[v * 8 + u] as f64
                                * (((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI) / 16.0)
                                    .cos()
                                * (((2 * y + 1) as f64 * v as f64 * std::f64::consts::PI) / 16.0)
                                    .cos();
                        }
                    }
                    let want = (sum / 4.0 + 128.0).round().clamp(0.0, 255.0);
                    let got = out[y * 8 + x] as f64;
                    assert!((got - want).abs() <= 1.0, "({x},{y}): {got} vs {want}");
                }
            }
        }
    }
}
