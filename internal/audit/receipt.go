package audit

import (
	"context"
	"sync/atomic"
)

// ReceiptSlot receives the place in the chain of the entry that carries it, once the writer
// has numbered and hashed it: a response that revealed values names that entry in its
// Coffer-Audit-Receipt header. It is safe to read while a writer that overran its deadline
// may still fill it.
type ReceiptSlot struct{ p atomic.Pointer[Receipt] }

// Set records the entry's place.
func (s *ReceiptSlot) Set(r Receipt) { s.p.Store(&r) }

// Get returns the entry's place, if it was written.
func (s *ReceiptSlot) Get() (Receipt, bool) {
	if r := s.p.Load(); r != nil {
		return *r, true
	}
	return Receipt{}, false
}

type receiptKey struct{}

// WithReceiptSlot returns a context whose reveal entries report their place into the slot.
func WithReceiptSlot(ctx context.Context, s *ReceiptSlot) context.Context {
	return context.WithValue(ctx, receiptKey{}, s)
}

// ReceiptSlotFrom returns the context's slot, nil if none.
func ReceiptSlotFrom(ctx context.Context) *ReceiptSlot {
	s, _ := ctx.Value(receiptKey{}).(*ReceiptSlot)
	return s
}
