package retry_test

import (
	"fmt"
	"time"

	"github.com/sluicedata/sluice/connectors/retry"
)

func ExamplePolicy_Backoff() {
	p := retry.Policy{MaxAttempts: 5, InitialBackoff: time.Second}.WithDefaults()
	for attempt := 1; attempt < p.MaxAttempts; attempt++ {
		fmt.Println(attempt, p.Backoff(attempt))
	}
	fmt.Println(retry.Policy{MaxAttempts: 0}.Validate())
	// Output:
	// 1 1s
	// 2 2s
	// 3 4s
	// 4 5s
	// retry policy {MaxAttempts:0 InitialBackoff:0s MaxBackoff:0s}: attempts must be at least 1 and backoffs not negative
}
