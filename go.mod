module github.com/kvwatch/kvwatch

go 1.26.8

require (
	github.com/go-json-experiment/json v1.27.2
	github.com/mattn/go-isatty v0.0.24
	github.com/rs/zerolog v1.35.1
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/mattn/go-colorable v0.1.14 // indirect
	golang.org/x/sys v0.29.0 // indirect
)
