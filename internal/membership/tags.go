package membership

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// MaxTagBytes is what serf lets a node's tags take in all.
const MaxTagBytes = 512

// Errors about node descriptions.
var (
	// ErrTagsTooLarge means the node's description does not fit in gossip.
	ErrTagsTooLarge = errors.New("membership: node description too large for gossip")
	// ErrBadTags means a member's tags could not be read.
	ErrBadTags = errors.New("membership: malformed member tags")
)

// Tag keys. They are short: all tags of a node share MaxTagBytes.
const (
	tagID        = "id"
	tagQUIC      = "q"
	tagHTTP      = "h"
	tagRole      = "r"
	tagResources = "res"
	tagLabels    = "lb"
	tagUsed      = "u"
)

// encodeTags turns a node's description into serf tags.
func encodeTags(in Info) (map[string]string, error) {
	if in.ID == "" {
		return nil, fmt.Errorf("%w: empty node ID", ErrBadTags)
	}
	tags := map[string]string{tagID: in.ID}
	if in.QUIC != "" {
		tags[tagQUIC] = in.QUIC
	}
	if in.HTTP != "" {
		tags[tagHTTP] = in.HTTP
	}
	if in.Role != "" {
		tags[tagRole] = in.Role
	}
	for key, res := range map[string]map[string]float64{tagResources: in.Resources, tagUsed: in.Used} {
		if len(res) == 0 {
			continue
		}
		parts := make([]string, 0, len(res))
		for _, k := range slices.Sorted(maps.Keys(res)) {
			v := res[k]
			if err := checkName(k); err != nil {
				return nil, fmt.Errorf("resource %q: %w", k, err)
			}
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return nil, fmt.Errorf("%w: resource %q amount %v", ErrBadTags, k, v)
			}
			parts = append(parts, k+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
		tags[key] = strings.Join(parts, ",")
	}
	if len(in.Labels) > 0 {
		parts := make([]string, 0, len(in.Labels))
		for _, k := range slices.Sorted(maps.Keys(in.Labels)) {
			v := in.Labels[k]
			if err := checkName(k); err != nil {
				return nil, fmt.Errorf("label %q: %w", k, err)
			}
			if strings.ContainsAny(v, ",=") {
				return nil, fmt.Errorf("%w: label %q value %q contains ',' or '='", ErrBadTags, k, v)
			}
			parts = append(parts, k+"="+v)
		}
		tags[tagLabels] = strings.Join(parts, ",")
	}
	size := 0
	for k, v := range tags {
		size += len(k) + len(v) + 2 // serf encodes a map of strings; a close bound
	}
	if size > MaxTagBytes {
		return nil, fmt.Errorf("%w: %d bytes of %d; use fewer or shorter labels", ErrTagsTooLarge, size, MaxTagBytes)
	}
	return tags, nil
}

func checkName(k string) error {
	if k == "" || strings.ContainsAny(k, ",= ") {
		return fmt.Errorf("%w: names must be non-empty, without ',', '=' or spaces", ErrBadTags)
	}
	return nil
}

// decodeTags reads the description a member gossips.
func decodeTags(tags map[string]string) (Info, error) {
	in := Info{ID: tags[tagID], QUIC: tags[tagQUIC], HTTP: tags[tagHTTP], Role: tags[tagRole]}
	if in.ID == "" {
		return in, fmt.Errorf("%w: no node ID", ErrBadTags)
	}
	var err error
	if in.Resources, err = decodeAmounts(tags[tagResources]); err != nil {
		return in, err
	}
	if in.Used, err = decodeAmounts(tags[tagUsed]); err != nil {
		return in, err
	}
	if s := tags[tagLabels]; s != "" {
		in.Labels = map[string]string{}
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return in, fmt.Errorf("%w: label %q", ErrBadTags, kv)
			}
			in.Labels[k] = v
		}
	}
	return in, nil
}

func decodeAmounts(s string) (map[string]float64, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]float64{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: resource %q", ErrBadTags, kv)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return nil, fmt.Errorf("%w: resource %q", ErrBadTags, kv)
		}
		out[k] = f
	}
	return out, nil
}
