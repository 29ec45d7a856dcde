package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin/binding"

	"github.com/cofferhq/coffer"
)

// formBinding binds an HTML form post and reports failures in the API's error shape.
type formBinding struct{}

func (formBinding) Name() string { return "form" }

func (formBinding) Bind(r *http.Request, obj any) error {
	if err := binding.FormPost.Bind(r, obj); err != nil {
		return coffer.Errorf(coffer.EBADREQUEST, "the form could not be read")
	}
	return nil
}
