using Shoal.Tasks;

namespace Shoal.Tests.Tasks;

public class DurationTests
{
    [Theory]
    [InlineData("90", 90)]
    [InlineData("1.5", 1.5)]
    [InlineData("500ms", 0.5)]
    [InlineData("90s", 90)]
    [InlineData("10m", 600)]
    [InlineData("2h", 7200)]
    [InlineData("1h30m", 5400)]
    [InlineData("1d", 86400)]
    [InlineData("01:30:00", 5400)]
    [InlineData("05:00", 300)]
    [InlineData("1-00:00:10", 86410)]
    public void TryParse_KnownForms_Parse(string text, double seconds)
    {
        Assert.True(Duration.TryParse(text, out var value));
        Assert.Equal(seconds, value.TotalSeconds, 6);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-5")]
    [InlineData("10x")]
    [InlineData("m")]
    [InlineData("1:2:3:4")]
    public void TryParse_Garbage_Fails(string text) => Assert.False(Duration.TryParse(text, out _));
}
