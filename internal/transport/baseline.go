package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"
)

// Baselines for `fabric bench`: the same bytes over one raw quic-go stream
// and over TCP, on loopback, in the same run as the object transfers they
// are compared with.

// MeasureQUIC copies size bytes over one raw quic-go stream on loopback
// with tlsConf (mutual TLS, as agents use), n times, and returns each copy's
// duration.
func MeasureQUIC(tlsConf *tls.Config, size int64, n int) ([]time.Duration, error) {
	conf := tlsConf.Clone()
	conf.NextProtos = []string{ALPN}
	qc := &quic.Config{MaxStreamReceiveWindow: 16 << 20, MaxConnectionReceiveWindow: 64 << 20}
	ln, err := quic.ListenAddr("127.0.0.1:0", conf, qc)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i*2654435761>>13) ^ byte(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		for {
			s, err := conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() {
				one := make([]byte, 1)
				if _, err := io.ReadFull(s, one); err != nil {
					return
				}
				for left := size; left > 0; left -= int64(len(payload)) {
					if _, err := s.Write(payload[:min(int64(len(payload)), left)]); err != nil {
						return
					}
				}
				_ = s.Close()
			}()
		}
	}()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), conf, qc)
	if err != nil {
		return nil, err
	}
	defer conn.CloseWithError(0, "")
	buf := make([]byte, 1<<20)
	var out []time.Duration
	for range n {
		start := time.Now()
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := s.Write([]byte{1}); err != nil {
			return nil, err
		}
		got, err := io.CopyBuffer(io.Discard, s, buf)
		if err != nil || got != size {
			return nil, fmt.Errorf("transport: quic baseline copied %d of %d bytes: %v", got, size, err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// MeasureTCP copies size bytes over loopback TCP n times.
func MeasureTCP(size int64, n int) ([]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	payload := make([]byte, 1<<20)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		one := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, one); err != nil {
				return
			}
			for left := size; left > 0; left -= int64(len(payload)) {
				if _, err := c.Write(payload[:min(int64(len(payload)), left)]); err != nil {
					return
				}
			}
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []time.Duration
	for range n {
		start := time.Now()
		if _, err := c.Write([]byte{1}); err != nil {
			return nil, err
		}
		if _, err := io.CopyN(io.Discard, c, size); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}
