package detect

// SetDistinctIndex turns the distinct windows' shortcuts (the long
// windows' index, distinct.go, and the short windows' scan from the end,
// scanSuffix) on or off, for tests that compare the findings of both ways
// of counting.
func SetDistinctIndex(en *Engine, on bool) { en.distinct.off = !on }

// DistinctIndexAnswers returns how many window counts the shortcuts gave.
func DistinctIndexAnswers(en *Engine) int64 { return en.distinct.answers.Load() }
