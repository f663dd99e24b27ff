//go:build !noembedded

package sink

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// The embedded server runs JetStream: nlbridge writes the state bucket,
// other local clients watch it but can neither write it nor delete it;
// its temporary JetStream directory is removed at shutdown.
func TestEmbeddedStateBucket(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: "netlink", Bucket: "netlink", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	dir := srv.(*embedded).JetStreamConfig().StoreDir
	defer func() {
		srv.Shutdown()
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("JetStream directory %s after shutdown: %v, want it removed", dir, err)
		}
	}()
	s, err := Connect(Config{Embedded: srv, Name: "test", Host: "h", Subjects: NewSubjects("netlink", "nlbridge", "h"),
		Encoder: encode.JSON{}, Logger: discard(),
		KV: KVConfig{Bucket: "netlink", Replicas: 1, Memory: true, PresenceTTL: kvTestTTL}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	}()
	dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 1, "lo", 65536))

	kv := bucket(t, srv.ClientURL()) // an anonymous client
	waitContents(t, kv, "h", []string{"h.link.lo=NEWLINK 1 lo mtu 65536"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, "h.link.lo", []byte("{}")); err == nil {
		t.Error("an anonymous client wrote a key of the state bucket")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteKeyValue(ctx, "netlink"); err == nil {
		t.Error("an anonymous client deleted the state bucket")
	}
	if _, err := kv.Get(context.Background(), "h.link.lo"); err != nil {
		t.Errorf("after the attempts: %v", err)
	}
	if st, err := kv.Status(context.Background()); err != nil || !strings.Contains(st.BackingStore(), "JetStream") {
		t.Errorf("status %v, %v", st, err)
	}
}
