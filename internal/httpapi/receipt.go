package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/audit"
)

// ReceiptHeader names the audit entry that recorded a response's reveal.
const ReceiptHeader = "Coffer-Audit-Receipt"

// auditReceipts gives the request a slot its reveal entry reports its place into, and
// stamps that place on the response as it is sent: every route that reveals values gets its
// read receipt without each handler having to ask for it.
func auditReceipts(c *gin.Context) {
	slot := &audit.ReceiptSlot{}
	c.Request = c.Request.WithContext(audit.WithReceiptSlot(c.Request.Context(), slot))
	c.Writer = &receiptWriter{ResponseWriter: c.Writer, slot: slot}
	c.Next()
}

// receiptWriter adds the receipt header before the first byte of a successful response.
type receiptWriter struct {
	gin.ResponseWriter
	slot    *audit.ReceiptSlot
	stamped bool
}

func (w *receiptWriter) stamp() {
	if w.stamped || w.ResponseWriter.Written() {
		return
	}
	w.stamped = true
	if st := w.ResponseWriter.Status(); st < 200 || st > 299 {
		return
	}
	if r, ok := w.slot.Get(); ok {
		w.Header().Set(ReceiptHeader, r.String())
	}
}

func (w *receiptWriter) Write(b []byte) (int, error) {
	w.stamp()
	return w.ResponseWriter.Write(b)
}

func (w *receiptWriter) WriteString(s string) (int, error) {
	w.stamp()
	return w.ResponseWriter.WriteString(s)
}

func (w *receiptWriter) WriteHeaderNow() {
	w.stamp()
	w.ResponseWriter.WriteHeaderNow()
}

// Unwrap lets http.ResponseController reach the connection (deadlines of long exports).
func (w *receiptWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *receiptWriter) Flush() {
	w.stamp()
	w.ResponseWriter.Flush()
}
