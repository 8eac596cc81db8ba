// goflow2-decode calls goflow2's own pipeline in-process on datagrams read from a file, so that its decode
// cost can be compared with flowsink's in-process decoder with the same scope: datagram in, one encoded
// document per flow out, no socket and no file write. The pipeline is goflow2's (utils.NetFlowPipe or
// utils.SFlowPipe with its protobuf producer and the format chosen with -format, "bin" being what goflow2
// recommends for volume); the transport only appends each message to a buffer emptied per datagram, as a
// request body would be built, and counts them.
//
//	goflow2-decode -protocol netflow|sflow -format bin|json [-templates FILE] -repeat N PAYLOADS
//
// PAYLOADS (and the templates file, decoded once before the clock starts) hold datagrams as
// <u16 big-endian length><bytes> records, the format bench/udpsend.c reads. Prints one JSON object:
// {"flows": messages written, "bytes": their bytes, "cpu_seconds": user+system CPU of the process (all
// threads, the garbage collector's included), "wall_seconds": ...}.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/netsampler/goflow2/v2/format"
	_ "github.com/netsampler/goflow2/v2/format/binary"
	_ "github.com/netsampler/goflow2/v2/format/json"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"
	"github.com/netsampler/goflow2/v2/utils"
)

// bodyTransport stands where goflow2's transports stand: it receives each formatted message.
type bodyTransport struct {
	body     bytes.Buffer
	messages int
	bytes    int
}

func (t *bodyTransport) Send(key, data []byte) error {
	t.body.Write(data)
	t.messages++
	t.bytes += len(data)
	return nil
}

func readPayloads(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var payloads [][]byte
	for len(raw) >= 2 {
		length := int(binary.BigEndian.Uint16(raw[:2]))
		if len(raw) < 2+length {
			return nil, fmt.Errorf("%s: truncated record", path)
		}
		payloads = append(payloads, raw[2:2+length])
		raw = raw[2+length:]
	}
	return payloads, nil
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		panic(err)
	}
	return time.Duration(usage.Utime.Nano()+usage.Stime.Nano()).Seconds()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "goflow2-decode:", err)
	os.Exit(1)
}

func main() {
	protocol := flag.String("protocol", "netflow", "netflow (v5, v9, IPFIX) or sflow")
	formatName := flag.String("format", "bin", "goflow2 format driver: bin (protobuf) or json")
	templatesPath := flag.String("templates", "", "datagrams decoded before the clock starts (templates)")
	repeat := flag.Int("repeat", 1, "passes over the datagrams")
	flag.Parse()
	if flag.NArg() != 1 {
		fail(fmt.Errorf("usage: goflow2-decode [flags] PAYLOADS"))
	}
	payloads, err := readPayloads(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	var templates [][]byte
	if *templatesPath != "" {
		if templates, err = readPayloads(*templatesPath); err != nil {
			fail(err)
		}
	}
	formatter, err := format.FindFormat(*formatName)
	if err != nil {
		fail(err)
	}
	// goflow2's defaults: no mapping file, so the compiled configuration of a nil ProducerConfig
	compiled, err := (*protoproducer.ProducerConfig)(nil).Compile()
	if err != nil {
		fail(err)
	}
	producer, err := protoproducer.CreateProtoProducer(compiled, protoproducer.CreateSamplingSystem)
	if err != nil {
		fail(err)
	}
	transport := &bodyTransport{}
	config := &utils.PipeConfig{Format: formatter, Transport: transport, Producer: producer}
	var pipe utils.FlowPipe
	switch *protocol {
	case "netflow":
		pipe = utils.NewNetFlowPipe(config)
	case "sflow":
		pipe = utils.NewSFlowPipe(config)
	default:
		fail(fmt.Errorf("unknown protocol %q", *protocol))
	}
	source := netip.MustParseAddrPort("127.0.0.1:40000")
	destination := netip.MustParseAddrPort("127.0.0.1:2055")
	decode := func(payload []byte) {
		message := &utils.Message{Src: source, Dst: destination, Payload: payload, Received: time.Now()}
		if err := pipe.DecodeFlow(message); err != nil {
			fail(err)
		}
	}
	for _, template := range templates {
		decode(template)
	}
	transport.messages, transport.bytes = 0, 0
	wallStart, cpuStart := time.Now(), cpuSeconds()
	for pass := 0; pass < *repeat; pass++ {
		for _, payload := range payloads {
			decode(payload)
			transport.body.Reset()
		}
	}
	cpu, wall := cpuSeconds()-cpuStart, time.Since(wallStart).Seconds()
	out, _ := json.Marshal(map[string]any{
		"flows": transport.messages, "bytes": transport.bytes, "cpu_seconds": cpu, "wall_seconds": wall,
	})
	fmt.Println(string(out))
}
