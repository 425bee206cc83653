// Command loadgen is the compiled load process of benchmarks/ads_load.py (`--generator go`): a share
// of Envoy-like ADS streams, driven by the orchestrator over stdin/stdout, one JSON object per line.
//
// Each stream does what Envoy does: CDS and LDS wildcard (the first request carrying the Node), an
// ACK for every response, and after every CDS response an EDS subscription to exactly the clusters
// in it; a broken stream is retried on the same connection with Envoy's jittered exponential
// backoff. It is the Python load process (benchmarks/load_process.py) without the interpreter, so
// that the generator is never what limits the server: it opens streams as fast as a fleet of Envoys
// reconnecting at once.
//
// Commands (stdin): {"cmd":"start","started":T,"deadline":T}, {"cmd":"phase","name":"moves"},
// {"cmd":"arm","index":N,"cluster":"kafka-a/broker-3","ip":"10.9.0.3","deadline":T},
// {"cmd":"stop"}. Replies (stdout): hello, synced, armed, moved, final: the same reports as the
// Python load process. Times are CLOCK_MONOTONIC seconds, the clock of Python's time.monotonic().
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
)

func monotonic() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func cpuSeconds() float64 {
	var usage unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return float64(usage.Utime.Sec+usage.Stime.Sec) + float64(usage.Utime.Usec+usage.Stime.Usec)/1e6
}

func sleepUntil(ctx context.Context, at float64) bool {
	wait := at - monotonic()
	if wait <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(time.Duration(wait * float64(time.Second)))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

type move struct {
	Index    int     `json:"index"`
	Cluster  string  `json:"cluster"`
	IP       string  `json:"ip"`
	Deadline float64 `json:"deadline"`
}

type command struct {
	Cmd      string  `json:"cmd"`
	Started  float64 `json:"started"`
	Deadline float64 `json:"deadline"`
	Name     string  `json:"name"`
	move
}

// tally is what one stream measured; guarded by its stream's mutex.
type tally struct {
	firstAttemptAt, syncedAt, firstErrorAt, seenAt *float64
	moveBytes, moveResponses                       int
}

type load struct {
	mu         sync.Mutex
	phase      string
	errors     map[string]map[string]int
	reconnects map[string]int
	details    map[string]string
	hit        map[string]map[int]bool
	unexpected atomic.Int64
	synced     atomic.Int64
	seen       atomic.Int64
	streams    []*stream
	allSynced  chan struct{}
	allSeen    chan struct{}
	syncedOnce sync.Once
	seenOnce   *sync.Once
	out        *json.Encoder
	outMu      sync.Mutex
	api        string
	perConn    int
	first      int
	total      int
	ramp       float64
}

func (l *load) lost(code, details string, connection int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.errors[l.phase] == nil {
		l.errors[l.phase] = map[string]int{}
		l.hit[l.phase] = map[int]bool{}
	}
	l.errors[l.phase][code]++
	l.hit[l.phase][connection] = true
	if _, ok := l.details[code]; !ok {
		if len(details) > 300 {
			details = details[:300]
		}
		l.details[code] = details
	}
}

func (l *load) reconnected() {
	l.mu.Lock()
	l.reconnects[l.phase]++
	l.mu.Unlock()
}

func (l *load) send(kind string, report any) {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if err := l.out.Encode(map[string]any{"kind": kind, "report": report}); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: cannot write to the orchestrator:", err)
		os.Exit(1)
	}
}

type stream struct {
	index int
	load  *load
	node  *core.Node

	mu       sync.Mutex
	tally    tally
	watch    *move
	cdsAcked bool
	ldsAcked bool
	edsNames []string
	missing  map[string]bool // nil: nothing of the subscription received yet
	versions map[string]string
	have     map[string]map[string]string // delta: what the stream holds, by type
}

func newStream(index int, l *load) *stream {
	return &stream{
		index:    index,
		load:     l,
		node:     &core.Node{Id: fmt.Sprintf("load-%d", index), Cluster: "load"},
		versions: map[string]string{},
		have:     map[string]map[string]string{clusterType: {}, endpointType: {}, listenerType: {}},
	}
}

func (s *stream) arm(m *move) {
	s.mu.Lock()
	s.watch = m
	s.tally.seenAt = nil
	s.tally.moveBytes, s.tally.moveResponses = 0, 0
	s.mu.Unlock()
}

// backoff is Envoy's JitteredExponentialBackOffStrategy: uniform in [0, base*(2^n-1)), capped.
type backoff struct{ retry int }

func (b *backoff) next() time.Duration {
	const base, limit = 0.5, 30.0
	if b.retry == 0 {
		b.retry = 1
	}
	ceiling := base * float64(int(1)<<b.retry-1)
	if ceiling <= limit {
		b.retry++
	}
	return time.Duration(min(rand.Float64()*ceiling, limit) * float64(time.Second))
}

func (s *stream) run(ctx context.Context, conn *grpc.ClientConn, connection int, startAt float64) {
	if !sleepUntil(ctx, startAt) {
		return
	}
	now := monotonic()
	s.mu.Lock()
	s.tally.firstAttemptAt = &now
	s.mu.Unlock()
	client := discovery.NewAggregatedDiscoveryServiceClient(conn)
	var b backoff
	for ctx.Err() == nil {
		var code, details string
		if s.load.api == "delta" {
			code, details = s.runDelta(ctx, client, &b)
		} else {
			code, details = s.runSotw(ctx, client, &b)
		}
		if ctx.Err() != nil {
			return
		}
		s.load.lost(code, details, connection)
		s.mu.Lock()
		if s.tally.firstErrorAt == nil {
			t := monotonic()
			s.tally.firstErrorAt = &t
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.next()):
		}
		s.load.reconnected()
	}
}

func statusOf(err error) (string, string) {
	if st, ok := status.FromError(err); ok {
		return st.Code().String(), st.Message()
	}
	return "client " + fmt.Sprintf("%T", err), err.Error()
}

func upper(code string) string {
	// gRPC's Go names are CamelCase (DeadlineExceeded); report them as grpcio does (DEADLINE_EXCEEDED).
	out := make([]byte, 0, len(code)+4)
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				out = append(out, '_')
			}
			out = append(out, c)
		} else if c >= 'a' && c <= 'z' {
			out = append(out, c-'a'+'A')
		} else {
			out = append(out, c)
		}
	}
	return string(out)
}

func (s *stream) runSotw(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, b *backoff) (string, string) {
	call, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		c, d := statusOf(err)
		return upper(c), d
	}
	nonces := map[string]string{}
	request := func(typeURL string, names []string, withNode bool) *discovery.DiscoveryRequest {
		r := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: s.versions[typeURL], ResponseNonce: nonces[typeURL]}
		if withNode {
			r.Node = s.node
		}
		return r
	}
	s.mu.Lock()
	eds := append([]string(nil), s.edsNames...)
	s.mu.Unlock()
	opening := []*discovery.DiscoveryRequest{request(clusterType, nil, true)}
	if len(eds) > 0 {
		opening = append(opening, request(endpointType, eds, false))
	}
	opening = append(opening, request(listenerType, nil, false))
	for _, r := range opening {
		if err := call.Send(r); err != nil {
			return s.ended(call, err)
		}
	}
	for {
		response, err := call.Recv()
		if err != nil {
			return s.ended(call, err)
		}
		b.retry = 1
		size := proto.Size(response)
		typeURL := response.GetTypeUrl()
		s.versions[typeURL], nonces[typeURL] = response.GetVersionInfo(), response.GetNonce()
		var replies []*discovery.DiscoveryRequest
		s.mu.Lock()
		s.tally.moveBytes += size
		s.tally.moveResponses++
		switch typeURL {
		case clusterType:
			names := clusterNames(response.GetResources())
			replies = append(replies, request(clusterType, nil, false))
			if s.clusters(names) {
				replies = append(replies, request(endpointType, s.edsNames, false))
			}
		case endpointType:
			resources := make([]anyResource, 0, len(response.GetResources()))
			for _, r := range response.GetResources() {
				resources = append(resources, r)
			}
			s.endpoints(resources)
			replies = append(replies, request(endpointType, s.edsNames, false))
		case listenerType:
			s.ldsAcked = true
			replies = append(replies, request(listenerType, nil, false))
		default:
			s.load.unexpected.Add(1)
		}
		s.checkSynced()
		s.mu.Unlock()
		for _, r := range replies {
			if err := call.Send(r); err != nil {
				return s.ended(call, err)
			}
		}
	}
}

type anyResource interface {
	GetTypeUrl() string
	GetValue() []byte
}

// The generator reads only what it needs of each resource, at the wire level, as cheaply as it can:
// decoding every Cluster of every response in full would make it, not the server, the bottleneck
// at 10,000 streams. The full decode stays available (-decode=full) to check the two agree.

var fullDecode bool

// fields calls visit for every field of a protobuf message: number, wire type, and its bytes
// (length-delimited fields only).
func fields(message []byte, visit func(number protowire.Number, value []byte)) bool {
	for len(message) > 0 {
		number, kind, n := protowire.ConsumeTag(message)
		if n < 0 {
			return false
		}
		message = message[n:]
		if kind == protowire.BytesType {
			value, m := protowire.ConsumeBytes(message)
			if m < 0 {
				return false
			}
			visit(number, value)
			message = message[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(number, kind, message)
		if m < 0 {
			return false
		}
		message = message[m:]
	}
	return true
}

// child: the first length-delimited field `number` of a message.
func child(message []byte, number protowire.Number) []byte {
	var found []byte
	fields(message, func(n protowire.Number, value []byte) {
		if n == number && found == nil {
			found = value
		}
	})
	return found
}

func clusterNames[T anyResource](resources []T) []string {
	names := make([]string, 0, len(resources))
	for _, r := range resources {
		if fullDecode {
			var c cluster.Cluster
			if proto.Unmarshal(r.GetValue(), &c) == nil {
				names = append(names, c.GetName())
			}
			continue
		}
		names = append(names, string(child(r.GetValue(), 1))) // Cluster.name
	}
	return names
}

// assignment: a ClusterLoadAssignment's cluster name and its endpoints' IPs.
func assignment(value []byte) (string, []string, bool) {
	if fullDecode {
		var a endpoint.ClusterLoadAssignment
		if proto.Unmarshal(value, &a) != nil {
			return "", nil, false
		}
		var ips []string
		for _, locality := range a.GetEndpoints() {
			for _, lb := range locality.GetLbEndpoints() {
				ips = append(ips, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
		return a.GetClusterName(), ips, true
	}
	var name string
	var ips []string
	ok := fields(value, func(n protowire.Number, field []byte) {
		switch n {
		case 1: // cluster_name
			name = string(field)
		case 2: // endpoints: LocalityLbEndpoints
			fields(field, func(m protowire.Number, lb []byte) {
				if m == 2 { // lb_endpoints: LbEndpoint.endpoint.address.socket_address.address
					socket := child(child(child(lb, 1), 1), 1)
					ips = append(ips, string(child(socket, 2)))
				}
			})
		}
	})
	return name, ips, ok
}

// clusters: a CDS response listed these; true when the EDS subscription changes. Holds s.mu.
func (s *stream) clusters(names []string) bool {
	sort.Strings(names)
	s.cdsAcked = true
	if equal(names, s.edsNames) {
		return false
	}
	s.edsNames, s.missing = names, nil
	return true
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// endpoints: an EDS response; counts the subscription's arrival and the armed move. Holds s.mu.
func (s *stream) endpoints(resources []anyResource) {
	got := map[string][]string{}
	for _, r := range resources {
		if name, ips, ok := assignment(r.GetValue()); ok {
			got[name] = ips
		}
	}
	s.received(got)
}

func (s *stream) received(got map[string][]string) {
	subscribed := make(map[string]bool, len(s.edsNames))
	for _, name := range s.edsNames {
		subscribed[name] = true
	}
	if s.missing == nil {
		s.missing = map[string]bool{}
		for _, name := range s.edsNames {
			if _, ok := got[name]; !ok {
				s.missing[name] = true
			}
		}
	} else {
		for name := range got {
			delete(s.missing, name)
		}
	}
	for name := range got {
		if !subscribed[name] {
			s.load.unexpected.Add(1)
		}
	}
	if s.watch != nil && s.tally.seenAt == nil {
		for _, ip := range got[s.watch.Cluster] {
			if ip == s.watch.IP {
				t := monotonic()
				s.tally.seenAt = &t
				if s.load.seen.Add(1) == int64(len(s.load.streams)) {
					s.load.mu.Lock()
					once, ch := s.load.seenOnce, s.load.allSeen
					s.load.mu.Unlock()
					once.Do(func() { close(ch) })
				}
				break
			}
		}
	}
}

// checkSynced: holds s.mu.
func (s *stream) checkSynced() {
	if s.tally.syncedAt == nil && s.cdsAcked && s.ldsAcked && len(s.edsNames) > 0 && s.missing != nil && len(s.missing) == 0 {
		t := monotonic()
		s.tally.syncedAt = &t
		if s.load.synced.Add(1) == int64(len(s.load.streams)) {
			s.load.syncedOnce.Do(func() { close(s.load.allSynced) })
		}
	}
}

type ender interface{ Context() context.Context }

func (s *stream) ended(call ender, err error) (string, string) {
	c, d := statusOf(err)
	return upper(c), d
}

func (s *stream) runDelta(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, b *backoff) (string, string) {
	call, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		c, d := statusOf(err)
		return upper(c), d
	}
	s.mu.Lock()
	initial := func(typeURL string) map[string]string {
		out := make(map[string]string, len(s.have[typeURL]))
		for k, v := range s.have[typeURL] {
			out[k] = v
		}
		return out
	}
	opening := []*discovery.DeltaDiscoveryRequest{{TypeUrl: clusterType, Node: s.node, ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: initial(clusterType)}}
	if len(s.edsNames) > 0 {
		opening = append(opening, &discovery.DeltaDiscoveryRequest{TypeUrl: endpointType, ResourceNamesSubscribe: append([]string(nil), s.edsNames...), InitialResourceVersions: initial(endpointType)})
	}
	opening = append(opening, &discovery.DeltaDiscoveryRequest{TypeUrl: listenerType, ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: initial(listenerType)})
	s.mu.Unlock()
	for _, r := range opening {
		if err := call.Send(r); err != nil {
			return s.ended(call, err)
		}
	}
	for {
		response, err := call.Recv()
		if err != nil {
			return s.ended(call, err)
		}
		b.retry = 1
		size := proto.Size(response)
		typeURL := response.GetTypeUrl()
		replies := []*discovery.DeltaDiscoveryRequest{{TypeUrl: typeURL, ResponseNonce: response.GetNonce()}}
		s.mu.Lock()
		s.tally.moveBytes += size
		s.tally.moveResponses++
		have, known := s.have[typeURL]
		if !known {
			s.load.unexpected.Add(1)
			s.mu.Unlock()
			continue
		}
		for _, name := range response.GetRemovedResources() {
			delete(have, name)
		}
		resources := make([]anyResource, 0, len(response.GetResources()))
		for _, r := range response.GetResources() {
			have[r.GetName()] = r.GetVersion()
			if r.GetResource() != nil {
				resources = append(resources, r.GetResource())
			}
		}
		switch typeURL {
		case clusterType:
			before := append([]string(nil), s.edsNames...)
			names := make([]string, 0, len(have))
			for name := range have {
				names = append(names, name)
			}
			if s.clusters(names) {
				now := map[string]bool{}
				for _, n := range s.edsNames {
					now[n] = true
				}
				was := map[string]bool{}
				var gone, added []string
				for _, n := range before {
					was[n] = true
					if !now[n] {
						gone = append(gone, n)
						delete(s.have[endpointType], n)
					}
				}
				for _, n := range s.edsNames {
					if !was[n] {
						added = append(added, n)
					}
				}
				replies = append(replies, &discovery.DeltaDiscoveryRequest{TypeUrl: endpointType, ResourceNamesSubscribe: added, ResourceNamesUnsubscribe: gone})
				s.missing = map[string]bool{}
				for n := range now {
					if _, ok := s.have[endpointType][n]; !ok {
						s.missing[n] = true
					}
				}
			}
		case endpointType:
			s.endpoints(resources)
		default:
			s.ldsAcked = true
		}
		s.checkSynced()
		s.mu.Unlock()
		for _, r := range replies {
			if err := call.Send(r); err != nil {
				return s.ended(call, err)
			}
		}
	}
}

func until(ch chan struct{}, deadline float64) {
	wait := deadline - monotonic()
	if wait <= 0 {
		return
	}
	select {
	case <-ch:
	case <-time.After(time.Duration(wait * float64(time.Second))):
	}
}

func optional(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func (l *load) reportSync(deadline float64) {
	until(l.allSynced, deadline)
	durations := make([]any, len(l.streams))
	firstErrors := make([]any, len(l.streams))
	for i, s := range l.streams {
		s.mu.Lock()
		t := s.tally
		s.mu.Unlock()
		if t.syncedAt != nil && t.firstAttemptAt != nil {
			durations[i] = *t.syncedAt - *t.firstAttemptAt
		}
		if t.firstErrorAt != nil && t.firstAttemptAt != nil {
			firstErrors[i] = *t.firstErrorAt - *t.firstAttemptAt
		}
	}
	l.send("synced", map[string]any{"durations": durations, "first_errors": firstErrors, "cpu": cpuSeconds()})
}

func (l *load) reportMove(m *move, allSeen chan struct{}) {
	until(allSeen, m.Deadline)
	time.Sleep(300 * time.Millisecond) // what the push brought in its wake is counted with it
	seenAt := make([]any, len(l.streams))
	bytes := make([]int, len(l.streams))
	responses := make([]int, len(l.streams))
	for i, s := range l.streams {
		s.mu.Lock()
		seenAt[i], bytes[i], responses[i] = optional(s.tally.seenAt), s.tally.moveBytes, s.tally.moveResponses
		s.mu.Unlock()
	}
	l.send("moved", map[string]any{"seen_at": seenAt, "bytes": bytes, "responses": responses, "cpu": cpuSeconds()})
}

func main() {
	target := flag.String("target", "", "HOST:PORT of the ADS server")
	api := flag.String("api", "sotw", "sotw or delta")
	first := flag.Int("first", 0, "global index of this process's first stream")
	streams := flag.Int("streams", 100, "streams of this process")
	perConn := flag.Int("per-connection", 100, "streams per gRPC connection")
	ramp := flag.Float64("ramp", 0, "stream i of all `total` starts at i/total*ramp seconds")
	total := flag.Int("total", 0, "streams of every process together (default: -streams)")
	decode := flag.String("decode", "wire", "wire: read only names and addresses; full: decode every resource")
	flag.Parse()
	if *target == "" || (*api != "sotw" && *api != "delta") || *streams < 1 || *perConn < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: -target HOST:PORT is required; -api sotw|delta; -streams and -per-connection >= 1")
		os.Exit(2)
	}
	fullDecode = *decode == "full"
	if *total == 0 {
		*total = *streams
	}
	l := &load{
		phase: "sync", errors: map[string]map[string]int{}, reconnects: map[string]int{},
		details: map[string]string{}, hit: map[string]map[int]bool{}, allSynced: make(chan struct{}),
		out: json.NewEncoder(os.Stdout), api: *api, perConn: *perConn, first: *first, total: *total, ramp: *ramp,
	}
	for i := 0; i < *streams; i++ {
		l.streams = append(l.streams, newStream(*first+i, l))
	}
	var conns []*grpc.ClientConn
	for i := 0; i < *streams; i += *perConn {
		conn, err := grpc.NewClient(*target,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)),
			grpc.WithInitialWindowSize(1<<24), grpc.WithInitialConnWindowSize(1<<24))
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		conns = append(conns, conn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	l.send("hello", cpuSeconds())
	input := bufio.NewScanner(os.Stdin)
	input.Buffer(make([]byte, 1<<20), 1<<20)
	for input.Scan() {
		var c command
		if err := json.Unmarshal(input.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: bad command:", err)
			os.Exit(2)
		}
		switch c.Cmd {
		case "start":
			for i, s := range l.streams {
				offset := float64(*first+i) / float64(*total) * *ramp
				connection := (*first + i) / *perConn
				running.Add(1)
				go func(s *stream, conn *grpc.ClientConn, connection int, at float64) {
					defer running.Done()
					s.run(ctx, conn, connection, at)
				}(s, conns[i / *perConn], connection, c.Started+offset)
			}
			go l.reportSync(c.Deadline)
		case "phase":
			l.mu.Lock()
			l.phase = c.Name
			l.mu.Unlock()
		case "arm":
			m := c.move
			m.Deadline = c.Deadline // the command's own "deadline" field shadows the embedded one in JSON
			allSeen := make(chan struct{})
			l.mu.Lock()
			l.allSeen, l.seenOnce = allSeen, &sync.Once{}
			l.mu.Unlock()
			l.seen.Store(0)
			for _, s := range l.streams {
				s.arm(&m)
			}
			l.send("armed", m.Index)
			go l.reportMove(&m, allSeen)
		case "stop":
			cpu := cpuSeconds()
			cancel()
			running.Wait()
			for _, conn := range conns {
				conn.Close()
			}
			l.mu.Lock()
			hit := map[string][]int{}
			for phase, connections := range l.hit {
				for c := range connections {
					hit[phase] = append(hit[phase], c)
				}
				sort.Ints(hit[phase])
			}
			final := map[string]any{
				"cpu": cpu, "errors": l.errors, "reconnects": l.reconnects, "details": l.details,
				"connections_hit": hit, "unexpected": l.unexpected.Load(),
			}
			l.mu.Unlock()
			l.send("final", final)
			return
		}
	}
}
