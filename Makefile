# Convenience targets; each is a plain go command you can also type yourself.
.PHONY: test demo build bench vet

build:
	go build -o pgundo ./cmd/pgundo

test:
	go test ./...

vet:
	gofmt -l . && go vet ./...

demo:
	go run ./cmd/pgundo demo

bench: build
	./pgundo bench capture
