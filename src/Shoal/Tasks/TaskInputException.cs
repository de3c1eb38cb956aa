namespace Shoal.Tasks;

/// <summary>Bad input from the user (a task file, an option value). The CLI prints the message and exits 2.</summary>
public sealed class TaskInputException : Exception
{
    public TaskInputException(string message)
        : base(message)
    {
    }

    public TaskInputException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public TaskInputException()
    {
    }
}
