package core_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/mitostar/mitostar/core"
)

func init() {
	// Registered in every process of the binary, so children have it too.
	core.RegisterFunc("example.greet", func(ctx context.Context, c *core.Call) (any, error) {
		var args []string
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		return fmt.Sprintf("hello, %s, from %s", args[0], c.Router.Name()), nil
	})
}

// A master starts a local child, and a grandchild through it, and calls a
// registered Go function in each.
func Example() {
	r := core.NewMaster(core.Options{})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	child, err := r.Connect(ctx, "local", &core.ConnectOptions{Name: "worker"})
	if err != nil {
		log.Fatal(err)
	}
	grandchild, err := r.Connect(ctx, "local", &core.ConnectOptions{Name: "deeper", Via: child})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range []*core.Context{child, grandchild} {
		var greeting string
		if err := c.Call(ctx, &greeting, "example.greet", "master"); err != nil {
			log.Fatal(err)
		}
		fmt.Println(greeting)
	}
	if err := grandchild.ShutdownWait(ctx); err != nil {
		log.Fatal(err)
	}
	err = grandchild.Call(ctx, nil, "example.greet", "again")
	fmt.Println(err)
	// Output:
	// hello, master, from worker
	// hello, master, from deeper
	// deeper has been shut down
}

// A Select yields results from several channels in arrival order.
func ExampleSelect() {
	a, b := core.NewLatch(), core.NewLatch()
	sel, err := core.NewSelect(true, a, b)
	if err != nil {
		log.Fatal(err)
	}
	defer sel.Close()
	b.Put("from b")
	a.Put("from a")
	ctx := context.Background()
	for sel.Len() > 0 {
		v, err := sel.Get(ctx, true)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(v)
	}
	_, err = sel.Get(ctx, false)
	fmt.Println(err)
	// Output:
	// from b
	// from a
	// Select has no receivers
}
