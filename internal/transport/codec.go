package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Objects travel in chunks, each compressed with zstd only when a sample of
// the object showed that it shrinks (raw float64 arrays do not; text does
// many times), and numeric arrays byte-shuffled first (bytes of equal
// significance side by side), which is what makes them compress.

// ChunkSize is the raw size of an object chunk.
const ChunkSize = 1 << 20

// Codec is how a chunk's bytes are encoded.
type Codec byte

// Codecs.
const (
	Raw  Codec = 0
	Zstd Codec = 1
)

// Plan is how an object's chunks are encoded: the codec and, for a numeric
// array, the width of its elements and where they start (the CBOR head
// before them is sent as a chunk of its own, so that chunks stay aligned).
type Plan struct {
	Codec      Codec
	Width      int   // element width for byte shuffling; 0 or 1: none
	DataOffset int64 // where the array's elements start
}

// ErrBadChunk means a chunk could not be decoded.
var ErrBadChunk = errors.New("transport: bad object chunk")

var (
	encOnce sync.Once
	encoder *zstd.Encoder
	decoder *zstd.Decoder
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	encOnce.Do(func() {
		var err error
		encoder, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err)
		}
		decoder, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(2*ChunkSize), zstd.WithDecoderConcurrency(0))
		if err != nil {
			panic(err)
		}
	})
	return encoder, decoder
}

// typedArray recognises an RFC 8746 typed array (the SDK's encoding of
// numeric slices) at the start of a CBOR value and returns its element
// width and where its elements start.
func typedArray(head []byte) (width int, offset int64) {
	if len(head) < 3 || head[0] != 0xd8 || head[1] < 64 || head[1] > 87 || head[2]>>5 != 2 {
		return 0, 0
	}
	tag := head[1]
	ll := int(tag & 3)
	if tag&0x10 != 0 { // floats: 16, 32, 64, 128 bits
		width = 2 << ll
	} else {
		width = 1 << ll
	}
	switch info := head[2] & 0x1f; {
	case info < 24:
		offset = 3
	case info == 24:
		offset = 4
	case info == 25:
		offset = 5
	case info == 26:
		offset = 7
	case info == 27:
		offset = 11
	default:
		return 0, 0
	}
	return width, offset
}

// sampleSize is how much of an object PlanFor compresses to decide.
const sampleSize = 256 << 10

// PlanFor decides how to send an object of which sample is the beginning
// (or all): zstd when it shrinks the sample by at least 10%, after byte
// shuffling for numeric arrays when that shrinks it more.
func PlanFor(sample []byte) Plan {
	width, off := typedArray(sample)
	if int64(len(sample)) > off {
		sample = sample[off:]
	} else {
		width, off = 0, 0
	}
	if len(sample) > sampleSize {
		sample = sample[:sampleSize]
	}
	if len(sample) < 512 {
		return Plan{}
	}
	enc, _ := codecs()
	best := Plan{Codec: Raw}
	bestSize := len(sample) * 9 / 10
	if n := len(enc.EncodeAll(sample, nil)); n < bestSize {
		best, bestSize = Plan{Codec: Zstd}, n
	}
	if width > 1 {
		if n := len(enc.EncodeAll(shuffle(sample, width), nil)); n < bestSize {
			best = Plan{Codec: Zstd, Width: width}
		}
	}
	best.DataOffset = off
	if best.Width <= 1 {
		best.Width, best.DataOffset = 0, 0
	}
	return best
}

// Chunks returns the boundaries of an object's chunks under p: the head
// before the elements (if any), then ChunkSize pieces.
func (p Plan) Chunks(size int64) []int64 {
	bounds := []int64{0}
	at := int64(0)
	if p.DataOffset > 0 && p.DataOffset < size {
		at = p.DataOffset
		bounds = append(bounds, at)
	}
	for at < size {
		at = min(at+ChunkSize, size)
		bounds = append(bounds, at)
	}
	return bounds
}

// chunkHeader is the header of an encoded chunk: codec, shuffle width, raw
// length and encoded length.
const chunkHeader = 10

// EncodeChunk encodes the raw chunk that starts at offset off of the
// object, appending to dst.
func (p Plan) EncodeChunk(dst, raw []byte, off int64) []byte {
	width := 0
	if p.Width > 1 && off >= p.DataOffset {
		width = p.Width
	}
	codec := p.Codec
	body := raw
	if width > 1 {
		body = shuffle(raw, width)
	}
	start := len(dst)
	dst = append(dst, make([]byte, chunkHeader)...)
	if codec == Zstd {
		enc, _ := codecs()
		dst = enc.EncodeAll(body, dst)
		if len(dst)-start-chunkHeader >= len(raw) { // it did not shrink: send it raw
			dst, codec, width, body = dst[:start+chunkHeader], Raw, 0, raw
		}
	}
	if codec == Raw {
		dst = append(dst, body...)
	}
	h := dst[start:]
	h[0], h[1] = byte(codec), byte(width)
	binary.BigEndian.PutUint32(h[2:], uint32(len(raw)))
	binary.BigEndian.PutUint32(h[6:], uint32(len(dst)-start-chunkHeader))
	return dst
}

// DecodeChunk decodes one encoded chunk into dst, which must be exactly
// as long as the chunk's raw bytes (the receiver knows the boundaries). It
// never writes past dst nor decompresses more than len(dst) bytes.
func DecodeChunk(dst, enc []byte) error {
	if len(enc) < chunkHeader {
		return fmt.Errorf("%w: %d bytes, shorter than a header", ErrBadChunk, len(enc))
	}
	codec, width := Codec(enc[0]), int(enc[1])
	rawLen, encLen := binary.BigEndian.Uint32(enc[2:]), binary.BigEndian.Uint32(enc[6:])
	body := enc[chunkHeader:]
	switch {
	case uint64(rawLen) != uint64(len(dst)):
		return fmt.Errorf("%w: %d raw bytes where %d were expected", ErrBadChunk, rawLen, len(dst))
	case uint64(encLen) != uint64(len(body)):
		return fmt.Errorf("%w: %d encoded bytes announced, %d sent", ErrBadChunk, encLen, len(body))
	case width != 0 && width != 2 && width != 4 && width != 8 && width != 16:
		return fmt.Errorf("%w: shuffle width %d", ErrBadChunk, width)
	}
	switch codec {
	case Raw:
		if len(body) != len(dst) {
			return fmt.Errorf("%w: raw chunk of %d bytes for %d", ErrBadChunk, len(body), len(dst))
		}
		if width > 1 {
			unshuffle(dst, body, width)
		} else {
			copy(dst, body)
		}
	case Zstd:
		_, dec := codecs()
		out, err := dec.DecodeAll(body, make([]byte, 0, len(dst)))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadChunk, err)
		}
		if len(out) != len(dst) {
			return fmt.Errorf("%w: decompressed to %d bytes, not %d", ErrBadChunk, len(out), len(dst))
		}
		if width > 1 {
			unshuffle(dst, out, width)
		} else {
			copy(dst, out)
		}
	default:
		return fmt.Errorf("%w: codec %d", ErrBadChunk, codec)
	}
	return nil
}

// shuffle groups the bytes of width-byte elements by significance: all
// first bytes, then all second bytes, and so on. Trailing bytes that do not
// fill an element stay at the end as they are.
func shuffle(src []byte, width int) []byte {
	out := make([]byte, len(src))
	n := len(src) / width
	switch width {
	case 8:
		p0, p1, p2, p3 := out[0:n], out[n:2*n], out[2*n:3*n], out[3*n:4*n]
		p4, p5, p6, p7 := out[4*n:5*n], out[5*n:6*n], out[6*n:7*n], out[7*n:8*n]
		for i := range n {
			e := src[i*8 : i*8+8 : i*8+8]
			p0[i], p1[i], p2[i], p3[i], p4[i], p5[i], p6[i], p7[i] = e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]
		}
	case 4:
		p0, p1, p2, p3 := out[0:n], out[n:2*n], out[2*n:3*n], out[3*n:4*n]
		for i := range n {
			e := src[i*4 : i*4+4 : i*4+4]
			p0[i], p1[i], p2[i], p3[i] = e[0], e[1], e[2], e[3]
		}
	default:
		for j := range width {
			plane := out[j*n : (j+1)*n]
			for i := range plane {
				plane[i] = src[i*width+j]
			}
		}
	}
	copy(out[n*width:], src[n*width:])
	return out
}

// unshuffle undoes shuffle from src into dst (same length).
func unshuffle(dst, src []byte, width int) {
	n := len(src) / width
	switch width {
	case 8:
		p0, p1, p2, p3 := src[0:n], src[n:2*n], src[2*n:3*n], src[3*n:4*n]
		p4, p5, p6, p7 := src[4*n:5*n], src[5*n:6*n], src[6*n:7*n], src[7*n:8*n]
		for i := range n {
			e := dst[i*8 : i*8+8 : i*8+8]
			e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7] = p0[i], p1[i], p2[i], p3[i], p4[i], p5[i], p6[i], p7[i]
		}
	case 4:
		p0, p1, p2, p3 := src[0:n], src[n:2*n], src[2*n:3*n], src[3*n:4*n]
		for i := range n {
			e := dst[i*4 : i*4+4 : i*4+4]
			e[0], e[1], e[2], e[3] = p0[i], p1[i], p2[i], p3[i]
		}
	default:
		for j := range width {
			plane := src[j*n : (j+1)*n]
			for i := range plane {
				dst[i*width+j] = plane[i]
			}
		}
	}
	copy(dst[n*width:], src[n*width:])
}
