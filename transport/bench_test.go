package transport

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

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
// same TLS setup: the limit for Pull.
func BenchmarkBaselineQUIC(b *testing.B) {
	c, _ := secrets.Create()
	cert, _ := c.NodeCertificate("n", []string{"127.0.0.1"})
	tlsConf := c.TLSConfig(cert, ALPN)
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, &quic.Config{MaxStreamReceiveWindow: 16 << 20, MaxConnectionReceiveWindow: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	payload := randomBytes(benchSize)
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					_, _ = s.Write(payload)
					_ = s.Close()
				}
			}()
		}
	}()
	conn, err := quic.DialAddr(context.Background(), ln.Addr().String(), tlsConf, &quic.Config{MaxStreamReceiveWindow: 16 << 20, MaxConnectionReceiveWindow: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		s, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		_, _ = s.Write([]byte{1})
		n, err := io.CopyBuffer(io.Discard, s, buf)
		if err != nil || n != benchSize {
			b.Fatalf("%d %v", n, err)
		}
	}
}

// BenchmarkBaselineTCP copies 64 MiB over loopback TCP.
func BenchmarkBaselineTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	payload := randomBytes(benchSize)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				one := make([]byte, 1)
				for {
					if _, err := c.Read(one); err != nil {
						return
					}
					_, _ = c.Write(payload)
				}
			}()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		_, _ = c.Write([]byte{1})
		if _, err := io.CopyN(io.Discard, c, benchSize); err != nil {
			b.Fatal(err)
		}
	}
}
