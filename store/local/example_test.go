package local_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
)

func Example() {
	dir, _ := os.MkdirTemp("", "store")
	defer os.RemoveAll(dir)

	s, err := local.Open(local.Config{Dir: dir, Memory: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	if err := s.CreateBucket(ctx, "results"); err != nil {
		log.Fatal(err)
	}
	body := "output of stage one"
	info, err := s.Put(ctx, "results", "run-7/part-0", strings.NewReader(body), int64(len(body)), store.PutOptions{TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Size, info.ETag)

	obj, err := s.Get(ctx, "results", "run-7/part-0", &store.Range{First: 10, Last: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer obj.Body.Close()
	b, _ := io.ReadAll(obj.Body)
	fmt.Printf("%q\n", b)

	_, err = s.Get(ctx, "results", "run-7/part-1", nil)
	fmt.Println(err)
	// Output:
	// 19 ffe68bb6240f401f71f436e1030b2e9a
	// "stage one"
	// store: no such key; write the object first (objects with a TTL vanish when it runs out): results/run-7/part-1
}
