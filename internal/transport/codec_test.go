package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// float64Array is how the SDK encodes a []float64: an RFC 8746 tag (86)
// around a byte string of little-endian elements.
func float64Array(n int, f func(i int) float64) []byte {
	b := []byte{0xd8, 86, 0x5a, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[3:], uint32(8*n))
	for i := range n {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f(i)))
	}
	return b
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestPlanAndChunks(t *testing.T) {
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog; "), 100000)
	smooth := float64Array(300000, func(i int) float64 { return float64(i) * 0.25 })
	cases := []struct {
		name string
		obj  []byte
		want Plan
	}{
		{"random bytes stay raw", randomBytes(3 << 20), Plan{Codec: Raw}},
		{"text is compressed", text, Plan{Codec: Zstd}},
		{"a numeric array is shuffled, then compressed", smooth, Plan{Codec: Zstd, Width: 8, DataOffset: 7}},
		{"tiny objects stay raw", []byte("hi"), Plan{Codec: Raw}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := PlanFor(c.obj)
			if p != c.want {
				t.Fatalf("PlanFor = %+v, want %+v", p, c.want)
			}
			bounds := p.Chunks(int64(len(c.obj)))
			got := make([]byte, len(c.obj))
			var sent int
			for i := 0; i+1 < len(bounds); i++ {
				lo, hi := bounds[i], bounds[i+1]
				enc := p.EncodeChunk(nil, c.obj[lo:hi], lo)
				sent += len(enc)
				if err := DecodeChunk(got[lo:hi], enc); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}
			if !bytes.Equal(got, c.obj) {
				t.Fatal("round trip changed the object")
			}
			t.Logf("%d bytes sent as %d (%.2fx)", len(c.obj), sent, float64(len(c.obj))/float64(sent))
			if p.Codec == Zstd && sent*2 > len(c.obj) {
				t.Fatalf("compressed plan sent %d of %d bytes", sent, len(c.obj))
			}
		})
	}
}

func TestDecodeChunkRejects(t *testing.T) {
	p := Plan{Codec: Zstd}
	raw := bytes.Repeat([]byte("abc"), 1000)
	good := p.EncodeChunk(nil, raw, 0)
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-3] ^= 0xff
	cases := map[string]struct {
		dst []byte
		enc []byte
	}{
		"short":            {make([]byte, len(raw)), good[:5]},
		"wrong raw length": {make([]byte, len(raw)+1), good},
		"truncated body":   {make([]byte, len(raw)), good[:len(good)-1]},
		"bad codec":        {make([]byte, 4), append([]byte{9, 0, 0, 0, 0, 4, 0, 0, 0, 4}, 1, 2, 3, 4)},
		"bad width":        {make([]byte, 4), append([]byte{0, 3, 0, 0, 0, 4, 0, 0, 0, 4}, 1, 2, 3, 4)},
		"corrupt zstd":     {make([]byte, len(raw)), corrupt},
	}
	for name, c := range cases {
		if err := DecodeChunk(c.dst, c.enc); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%s: %v, want ErrBadChunk", name, err)
		}
	}
}

// FuzzDecodeChunk: arbitrary bytes never panic the decoder, nor make it
// write past its destination.
func FuzzDecodeChunk(f *testing.F) {
	p := Plan{Codec: Zstd, Width: 8}
	f.Add(p.EncodeChunk(nil, bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 100), 0), 800)
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 7}, 1)
	f.Fuzz(func(t *testing.T, enc []byte, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		dst := make([]byte, n+8)
		guard := append([]byte(nil), dst[n:]...)
		_ = DecodeChunk(dst[:n:n], enc)
		if !bytes.Equal(dst[n:], guard) {
			t.Fatal("DecodeChunk wrote past its destination")
		}
	})
}

func TestShuffle(t *testing.T) {
	for _, w := range []int{2, 4, 8} {
		for _, n := range []int{0, 1, 7, 64, 1001} {
			src := randomBytes(n)
			dst := make([]byte, n)
			unshuffle(dst, shuffle(src, w), w)
			if !bytes.Equal(dst, src) {
				t.Fatalf("width %d, %d bytes: unshuffle(shuffle(x)) != x", w, n)
			}
		}
	}
}

func BenchmarkShuffle8(b *testing.B) {
	src := randomBytes(ChunkSize)
	dst := make([]byte, ChunkSize)
	b.SetBytes(ChunkSize)
	for range b.N {
		unshuffle(dst, shuffle(src, 8), 8)
	}
}

// FuzzDecodeObjectMeta: whatever bytes a holder sends as an object's
// description, decoding either fails or yields one whose checksums match
// its chunks, and that encodes back to the same bytes.
func FuzzDecodeObjectMeta(f *testing.F) {
	f.Add(newObjectMeta(bytes.Repeat([]byte{1, 2, 3}, 1<<20)).encode())
	f.Add(newObjectMeta(nil).encode())
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeObjectMeta(b)
		if err != nil {
			return
		}
		if len(m.Sums) != len(m.Plan.Chunks(m.Size))-1 {
			t.Fatalf("%d sums for %d chunks", len(m.Sums), len(m.Plan.Chunks(m.Size))-1)
		}
		if !bytes.Equal(m.encode(), b) {
			t.Fatal("does not encode back to the same bytes")
		}
	})
}
