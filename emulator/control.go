package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

const maxControlBodyBytes = 1 << 20

// The control plane lives under /_emulator/, never on Pleo's paths. It has no
// authentication: the emulator is a local test server, bound to loopback by default.
func (e *Emulator) routeControl(mux *http.ServeMux) {
	mux.HandleFunc("GET /_emulator/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /_emulator/clients", e.ctlListClients)
	mux.HandleFunc("POST /_emulator/clients", e.ctlAddClient)
	mux.HandleFunc("GET /_emulator/clock", e.ctlClock)
	mux.HandleFunc("POST /_emulator/clock", e.ctlAdvance)
	mux.HandleFunc("GET /_emulator/authorisations", e.ctlAuthorisations)
	mux.HandleFunc("POST /_emulator/authorisations/{id}/revoke", e.ctlRevoke)
	mux.HandleFunc("GET /_emulator/faults", e.ctlGetFaults)
	mux.HandleFunc("PUT /_emulator/faults", e.ctlPutFaults)
	mux.HandleFunc("DELETE /_emulator/faults", e.ctlDeleteFaults)
	mux.HandleFunc("GET /_emulator/report", e.ctlReport)
	mux.HandleFunc("POST /_emulator/reset", e.ctlReset)
	mux.HandleFunc("/_emulator/", func(w http.ResponseWriter, r *http.Request) {
		ctlError(w, http.StatusNotFound, "no control endpoint "+r.Method+" "+r.URL.Path)
	})
}

// ClockState is the body of GET and POST /_emulator/clock.
type ClockState struct {
	Now    time.Time `json:"now"`
	Offset Duration  `json:"offset"`
}

// ClockAdvance is the body of POST /_emulator/clock.
type ClockAdvance struct {
	Advance Duration `json:"advance"`
}

func ctlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decodeStrict reads one JSON value into v, refusing unknown fields, trailing data and
// oversized bodies.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("the body is larger than %d bytes", maxControlBodyBytes)
		}
		if errors.Is(err, io.EOF) {
			return errors.New("the body is empty; a JSON object is required")
		}
		return fmt.Errorf("the body is not valid JSON for this endpoint: %v", err)
	}
	if dec.More() {
		return errors.New("the body has data after the JSON object")
	}
	return nil
}

func (e *Emulator) ctlListClients(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"clients": e.Clients()})
}

func (e *Emulator) ctlAddClient(w http.ResponseWriter, r *http.Request) {
	var c Client
	if err := decodeStrict(w, r, &c); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := e.AddClient(c); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (e *Emulator) clockState() ClockState {
	return ClockState{Now: e.clock.Now(), Offset: Duration(e.clock.offset.Load())}
}

func (e *Emulator) ctlClock(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.clockState())
}

func (e *Emulator) ctlAdvance(w http.ResponseWriter, r *http.Request) {
	var req ClockAdvance
	if err := decodeStrict(w, r, &req); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := e.Advance(time.Duration(req.Advance)); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, e.clockState())
}

func (e *Emulator) ctlAuthorisations(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"authorisations": e.Report().Authorisations})
}

func (e *Emulator) ctlRevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := e.Revoke(id); err != nil {
		ctlError(w, http.StatusNotFound, err.Error())
		return
	}
	for _, a := range e.Report().Authorisations {
		if a.ID == id {
			writeJSON(w, http.StatusOK, a)
			return
		}
	}
}

func (e *Emulator) ctlGetFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.Faults())
}

func (e *Emulator) ctlPutFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := decodeStrict(w, r, &f); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := e.SetFaults(f); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, e.Faults())
}

func (e *Emulator) ctlDeleteFaults(w http.ResponseWriter, r *http.Request) {
	_ = e.SetFaults(nil)
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) ctlReport(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.Report())
}

func (e *Emulator) ctlReset(w http.ResponseWriter, r *http.Request) {
	e.Reset()
	w.WriteHeader(http.StatusNoContent)
}
