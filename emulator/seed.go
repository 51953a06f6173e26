package emulator

import (
	"fmt"
	"time"
)

// company is a seeded Pleo company. The seeded data is fixed, so tests can name it.
type company struct {
	ID        string
	Name      string
	Employees []employee
}

// URN is the company's subject URN, as GET /v1/introspect reports it.
func (c *company) URN() string { return "urn:pleo:company:" + c.ID }

type employee struct {
	ID        string `json:"id"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
	Email     string `json:"email"`
	CompanyID string `json:"companyId"`
}

type exportJob struct {
	ID        string    `json:"id"`
	CompanyID string    `json:"companyId"`
	Status    string    `json:"status"`
	From      string    `json:"from,omitempty"`
	To        string    `json:"to,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// seedEpoch is when the seeded export jobs were created.
var seedEpoch = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// Companies are the seeded companies, in consent-page order.
var companies = func() []*company {
	type spec struct {
		id, name, domain string
		people           [][2]string
	}
	specs := []spec{
		{"8d1c3f52-6a4e-4a11-9c0b-1f2e3d4c5b6a", "Nordlys ApS", "nordlys.dk", [][2]string{
			{"Astrid", "Jensen"}, {"Mads", "Nielsen"}, {"Freja", "Hansen"}, {"Oskar", "Pedersen"},
			{"Ida", "Andersen"}, {"Emil", "Christensen"}, {"Clara", "Larsen"}, {"Noah", "Sørensen"},
			{"Alma", "Rasmussen"}, {"William", "Jørgensen"}, {"Karla", "Petersen"}, {"Lucas", "Madsen"},
		}},
		{"2b7e9a10-44f3-4c2d-8e5f-a0b1c2d3e4f5", "Fjord Freight AS", "fjordfreight.no", [][2]string{
			{"Ingrid", "Berg"}, {"Lars", "Haugen"}, {"Sofie", "Johansen"}, {"Henrik", "Olsen"},
			{"Nora", "Larsen"},
		}},
		{"c4d5e6f7-0812-4a3b-9c4d-5e6f70819203", "Lagom Design AB", "lagom.se", [][2]string{
			{"Elsa", "Lindqvist"}, {"Axel", "Nyström"}, {"Maja", "Ekström"},
		}},
	}
	out := make([]*company, 0, len(specs))
	for ci, s := range specs {
		c := &company{ID: s.id, Name: s.name}
		for pi, p := range s.people {
			c.Employees = append(c.Employees, employee{
				ID:        fmt.Sprintf("e%d%03d000-0000-4000-8000-%012d", ci+1, pi+1, pi+1),
				FirstName: p[0], LastName: p[1],
				Email:     fmt.Sprintf("%s.%s@%s", lowerASCII(p[0]), lowerASCII(p[1]), s.domain),
				CompanyID: s.id,
			})
		}
		out = append(out, c)
	}
	return out
}()

func companyByID(id string) *company {
	for _, c := range companies {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// companyBySubject accepts a company URN or a bare company id.
func companyBySubject(s string) *company {
	for _, c := range companies {
		if c.URN() == s || c.ID == s {
			return c
		}
	}
	return nil
}

func seedExportJobs() map[string][]*exportJob {
	jobs := map[string][]*exportJob{}
	for ci, c := range companies {
		for j := 0; j < 2; j++ {
			jobs[c.ID] = append(jobs[c.ID], &exportJob{
				ID:        fmt.Sprintf("b%d%03d000-0000-4000-8000-%012d", ci+1, j+1, j+1),
				CompanyID: c.ID, Status: "completed",
				From: "2025-12-01", To: "2025-12-31",
				CreatedAt: seedEpoch.Add(time.Duration(ci*24+j) * time.Hour),
			})
		}
	}
	return jobs
}

// lowerASCII lower-cases ASCII letters and maps the Nordic letters the seed uses, so the
// seeded e-mail addresses stay ASCII.
func lowerASCII(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		case r == 'ø' || r == 'Ø':
			r = 'o'
		case r == 'ö' || r == 'Ö':
			r = 'o'
		case r == 'å' || r == 'Å' || r == 'ä' || r == 'Ä':
			r = 'a'
		}
		out = append(out, r)
	}
	return string(out)
}
