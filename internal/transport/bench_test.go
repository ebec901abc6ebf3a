package transport

import (
	"context"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/secrets"
)

const benchSize = 64 << 20

// BenchmarkPull pulls a 64 MiB object between two endpoints on loopback:
// random bytes (sent raw) and text (compressed). Compare with the
// baselines below, run in the same invocation.
func BenchmarkPull(b *testing.B) {
	for _, c := range []struct {
		name string
		obj  []byte
	}{
		{"random", randomBytes(benchSize)},
		{"float64-array", float64Array(benchSize/8, func(i int) float64 { return float64(i%4096) * 0.5 })},
	} {
		b.Run(c.name, func(b *testing.B) {
			src := &memSource{objs: map[[IDSize]byte][]byte{{1}: c.obj}}
			cl, srv := pair(b, src)
			defer cl.Close()
			defer srv.Close()
			dst := make([]byte, len(c.obj))
			b.SetBytes(int64(len(c.obj)))
			b.ResetTimer()
			for range b.N {
				if _, err := cl.Pull(context.Background(), srv.Addr(), [IDSize]byte{1}, func(int64) ([]byte, error) { return dst, nil }, PullOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBaselineQUIC copies 64 MiB over one raw quic-go stream with the
// same TLS setup: the limit for Pull (MeasureQUIC, as fabric bench runs it).
func BenchmarkBaselineQUIC(b *testing.B) {
	c, _ := secrets.Create()
	cert, _ := c.NodeCertificate("n", []string{"127.0.0.1"}, false, time.Hour)
	ds, err := MeasureQUIC(c.TLSConfig(cert, secrets.TLSOptions{}), benchSize, b.N)
	if err != nil {
		b.Fatal(err)
	}
	reportCopies(b, ds)
}

// BenchmarkBaselineTCP copies 64 MiB over loopback TCP (MeasureTCP).
func BenchmarkBaselineTCP(b *testing.B) {
	ds, err := MeasureTCP(benchSize, b.N)
	if err != nil {
		b.Fatal(err)
	}
	reportCopies(b, ds)
}

// reportCopies reports the copies' own throughput, leaving out set-up.
func reportCopies(b *testing.B, ds []time.Duration) {
	var total time.Duration
	for _, d := range ds {
		total += d
	}
	b.ReportMetric(float64(benchSize)*float64(len(ds))/total.Seconds()/1e6, "MB/s")
}
