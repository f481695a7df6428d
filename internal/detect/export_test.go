package detect

// SetDistinctIndex turns the distinct windows' index (distinct.go) on or
// off, for tests that compare the findings of both ways of counting.
func SetDistinctIndex(en *Engine, on bool) { en.distinct.off = !on }

// DistinctIndexAnswers returns how many window counts the index gave.
func DistinctIndexAnswers(en *Engine) int64 { return en.distinct.answers.Load() }
